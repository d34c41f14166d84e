# Copyright: tai-deploy contributors
"""Action plugin of gke_cluster: runs the module and shows its operations while they run.

Creating a regional cluster takes about ten minutes, and a silent task of that length looks
hung. Ansible's own async polling only prints the job id, so this plugin runs the module in a
thread and, every ``progress_interval`` seconds, shows the newest line the module wrote to a
progress file: which GKE operation runs, what it does, its status and the time elapsed, e.g.

    [europe-west1] GKE operation operation-17 (CREATE_CLUSTER) to create cluster tai-cluster
    in europe-west1 (project tai-production): RUNNING, 4m10s elapsed

The file lives on the controller next to the module (regions are inventory hosts with
``ansible_connection: local``); the module's result is returned unchanged. Check mode makes no
operation, so nothing is shown.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False

    def run(self, tmp: str | None = None,
            task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = dict(self._task.args)
        interval = max(1.0, float(args.get("progress_interval") or 30))
        handle, name = tempfile.mkstemp(prefix="tai-gke-progress-", suffix=".log")
        os.close(handle)
        progress = Path(name)
        args["progress_file"] = name
        host = (task_vars or {}).get("inventory_hostname", "")
        outcome: dict[str, Any] = {}

        def run_module() -> None:
            try:
                outcome.update(self._execute_module(module_name="gke_cluster", module_args=args,
                                                    task_vars=task_vars))
            except Exception as exc:  # reported as the task's failure, not a traceback
                outcome.update(failed=True, msg=f"The gke_cluster module did not run: {exc}")

        worker = threading.Thread(target=run_module, name="gke_cluster", daemon=True)
        worker.start()
        shown = ""
        try:
            while worker.is_alive():
                worker.join(interval)
                if worker.is_alive():
                    shown = self._show_latest(progress, shown, host)
        finally:
            progress.unlink(missing_ok=True)
        result.update(outcome)
        return result

    @staticmethod
    def _show_latest(progress: Path, shown: str, host: str) -> str:
        try:
            lines = progress.read_text(encoding="utf-8").splitlines()
        except OSError:
            return shown
        latest = lines[-1] if lines else ""
        if latest and latest != shown:
            display.display(f"[{host}] {latest}")
        return latest or shown
