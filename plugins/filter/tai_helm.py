# Copyright: tai-deploy contributors
"""Filter tai_helm_pending_releases: the releases a stopped Helm operation left pending.

``helm_info_results | tai_helm_pending_releases`` takes kubernetes.core.helm_info results (a
loop's ``results`` or a list of single results) and returns ``[{name, namespace, status}]`` for
each release whose last revision is ``pending-install``, ``pending-upgrade`` or
``pending-rollback`` (Helm's release statuses, pkg/release/common Status): Helm refuses any
operation on such a release until it is rolled back or uninstalled (roles/helm_release/tasks/
recover.yml).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")


def tai_helm_pending_releases(results: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    out = []
    for result in results:
        status = result.get("status") or {}
        if isinstance(status, Mapping) and status.get("status") in PENDING:
            out.append({"name": str(status.get("name")),
                        "namespace": str(status.get("namespace")),
                        "status": str(status["status"])})
    return out


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_helm_pending_releases": tai_helm_pending_releases}
