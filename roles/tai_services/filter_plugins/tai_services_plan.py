# Copyright: tai-deploy contributors
"""Filter of the tai_services plan: the files it writes besides the chart's values and manifests.

``live | tai_services_live_files(apply)`` is live.yaml (what the live cluster keeps, and why) in
apply mode, where the live cluster was read, and nothing in plan mode. The values and the
manifests are written by the bundle task that renders the chart (module_utils/tai_deploy/
helm_template.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def tai_services_live_files(live: Mapping[str, Any], apply: Any) -> list[dict[str, Any]]:
    if not _true(apply):
        return []
    # The effective values are values.yaml already; live.yaml says what the cluster kept.
    return [{"path": "live.yaml", "data": {k: v for k, v in live.items() if k != "effective"}}]


def _true(value: Any) -> bool:
    """Ansible's `| bool` of a switch given as a bool or as a string (-e tai_apply=true)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1", "y", "t")
    return bool(value)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"tai_services_live_files": tai_services_live_files}
