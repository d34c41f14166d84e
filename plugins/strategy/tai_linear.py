# Copyright: tai-deploy contributors
"""Strategy tai_linear: Ansible's linear strategy, with the plugins loaded before it forks.

Every task runs in a worker process forked from the controller's main process for that task,
and the worker dies with it. Ansible loads filter, test and lookup plugins lazily, in the
worker that first needs one, so each task of a plan loaded the Jinja plugins again (about 25
plugin files of plugins/filter and roles/*/filter_plugins, and the module_utils cores they
import): measured, most of the CPU time of a task that only templates a variable or is skipped.
This strategy loads them once in the main process, before the first task and again after a
role adds its plugin folder (include_role clears the loaders' caches), so that every forked
worker finds them loaded. Nothing else differs from ansible.builtin.linear.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: tai_linear
short_description: The linear strategy, with filter, test and lookup plugins loaded before forking
description:
  - Runs exactly as ansible.builtin.linear. Before a task is sent to a worker, the filter and
    test plugins, and the lookup plugins of the configured folders, are loaded in the main
    process (once, until a role adds a plugin folder), so the forked workers do not load them
    again for every task.
author: tai-deploy contributors
"""

from typing import Any

from ansible.plugins.loader import filter_loader, lookup_loader, test_loader
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategy


def _load_plugins(state: dict[str, Any]) -> None:
    """Load what the workers would load; a no-op while the loaders' search paths are unchanged."""
    paths = (tuple(filter_loader._get_paths()), tuple(test_loader._get_paths()),
             tuple(lookup_loader._get_paths()))
    if state.get("paths") == paths:
        return
    for loader in (filter_loader, test_loader):
        for _ in loader.all():  # imports every plugin file and caches its wrappers
            pass
    for _ in lookup_loader.all(class_only=True):  # imports the lookup modules (sys.modules)
        pass
    state["paths"] = paths


class StrategyModule(LinearStrategy):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tai_loaded: dict[str, Any] = {}

    def _queue_task(self, host: Any, task: Any, task_vars: Any, play_context: Any) -> Any:
        _load_plugins(self._tai_loaded)
        return super()._queue_task(host, task, task_vars, play_context)
