# Copyright: tai-deploy contributors
"""Callback tai_preload: the filter, test and lookup plugins loaded before a task's workers fork.

Every task runs in a worker process forked from the controller's main process for that task,
and the worker dies with it. Ansible loads filter, test and lookup plugins lazily, in the
worker that first needs one, so each task of a plan loaded the Jinja plugins again (about 25
plugin files of plugins/filter and roles/*/filter_plugins, and the module_utils cores they
import): measured, most of the CPU time of a task that only templates a variable or is skipped.
The strategy announces each task (v2_playbook_on_task_start) in the main process just before it
queues the task to the workers; this callback loads the plugins there, once, and again after a
role adds its plugin folder (include_role clears the loaders' caches), so that every forked
worker finds them loaded.

A callback rather than a strategy: ansible-core deprecates strategy plugins outside
ansible.builtin (a deprecation warning on every run), while callbacks are a supported extension
point. It prints nothing and changes no result.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: tai_preload
type: aggregate
short_description: Loads the filter, test and lookup plugins in the main process before forking
description:
  - When a task starts, loads the filter and test plugins, and the lookup plugins of the
    configured folders, in the controller's main process (once, until a role adds a plugin
    folder), so the workers forked for the task do not load them again. Prints nothing.
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
author: tai-deploy contributors
"""

from typing import Any

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, lookup_loader, test_loader


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


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "tai_preload"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tai_loaded: dict[str, Any] = {}

    def v2_playbook_on_task_start(self, task: Any, is_conditional: Any) -> None:
        _load_plugins(self._tai_loaded)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        _load_plugins(self._tai_loaded)
