# Copyright: tai-deploy contributors
"""Action plugin of tai_bundle: the module's core, run without a module process.

Same argument spec, core (run_bundle in module_utils/tai_deploy/plan_tasks.py),
result, check mode and diff as the module; see plugins/plugin_utils/in_process.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_PLUGINS = str(Path(__file__).resolve().parents[1])
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)

# kubernetes_validate is imported here, in the main process (the strategy loads this file before
# it forks the task's worker), not by the first manifest validation of every task.
import kubernetes_validate  # noqa: E402, F401
from plugin_utils.in_process import InProcessModule, module_constants  # noqa: E402
from tai_deploy import gcp_schema  # noqa: E402
from tai_deploy.plan_tasks import run_bundle  # noqa: E402

# This file is imported in Ansible's main process, before the workers of the bundle tasks fork,
# and a worker's caches die with it. Compute's discovery document is 5 MB of JSON (0.1 s to
# parse, against a few ms for the other APIs) and three bundles of every region check bodies
# against it (the project's network and regional resources, the load balancer): parsed here
# once, every worker inherits it.
gcp_schema.document("compute.v1")


class ActionModule(InProcessModule):
    MODULE = "tai_bundle"
    SPEC = module_constants("tai_bundle")

    def core(self, params: dict[str, Any], *, check_mode: bool, diff: bool) -> dict[str, Any]:
        return run_bundle(params, check_mode=check_mode, diff=diff)
