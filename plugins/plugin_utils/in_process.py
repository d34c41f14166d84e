# Copyright: tai-deploy contributors
"""Run one of the project's controller-side modules inside Ansible's worker, not a new process.

Regions are inventory hosts with ``ansible_connection: local``: a module such as tai_bundle runs
on the controller anyway, and a module process buys nothing but its start-up (0.3-0.4 s to
build, copy and start the AnsiballZ payload and import Ansible again; a plan made twelve of
them per region). The action plugin of such a module validates the task's arguments against the
module's own ARGUMENT_SPEC (the same validator AnsibleModule uses) and calls the same typed core
as the module's ``main()`` (module_utils/tai_deploy/plan_tasks.py), so the result, the check
mode, the diff and the failure messages are those of the module. On any other connection the
module runs as usual.

The action plugin's file is imported by the strategy in the main process (it asks for the class
before it forks a worker), so the cores and their libraries are imported once per run rather
than once per task.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

REPO = Path(__file__).resolve().parents[2]
_MODULE_UTILS = str(REPO / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)


def module_constants(name: str) -> Mapping[str, Any]:
    """ARGUMENT_SPEC and SPEC_OPTIONS of library/<name>.py (the module's only declaration)."""
    spec = importlib.util.spec_from_file_location(f"_tai_module_{name}", REPO / "library" /
                                                  f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"library/{name}.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"argument_spec": module.ARGUMENT_SPEC, **getattr(module, "SPEC_OPTIONS", {})}


class InProcessModule(ActionBase):  # type: ignore[misc]
    """Base of the action plugins of tai_bundle, tai_plan_summary and the input checks."""

    TRANSFERS_FILES = False
    MODULE = ""
    SPEC: Mapping[str, Any] = {}

    def core(self, params: dict[str, Any], *, check_mode: bool, diff: bool) -> dict[str, Any]:
        """The module's result for validated parameters (module_utils/tai_deploy/plan_tasks.py)."""
        raise NotImplementedError

    def run(self, tmp: str | None = None,
            task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        if self._connection.transport != "local":
            result.update(self._execute_module(module_name=self.MODULE,
                                               module_args=dict(self._task.args),
                                               task_vars=task_vars))
            return result
        _, params = self.validate_argument_spec(**self.SPEC)
        # The plain JSON data a module process would receive (no Ansible-tagged str/dict types,
        # which the YAML serialiser of the cores does not know).
        params = json.loads(json.dumps(params))
        outcome = self.core(params, check_mode=bool(self._task.check_mode),
                            diff=bool(self._task.diff))
        result.update(json.loads(json.dumps(outcome)))
        return result
