# Copyright: tai-deploy contributors
"""Action plugin of tai_inventory_check: the module's core, run without a module process.

Same argument spec, core (run_inventory_check in module_utils/tai_deploy/plan_tasks.py),
result, check mode and diff as the module; see plugins/plugin_utils/in_process.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_PLUGINS = str(Path(__file__).resolve().parents[1])
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)

from plugin_utils.in_process import InProcessModule, module_constants  # noqa: E402
from tai_deploy.plan_tasks import run_inventory_check  # noqa: E402


class ActionModule(InProcessModule):
    MODULE = "tai_inventory_check"
    SPEC = module_constants("tai_inventory_check")

    def core(self, params: dict[str, Any], *, check_mode: bool, diff: bool) -> dict[str, Any]:
        return run_inventory_check(params, check_mode=check_mode, diff=diff)
