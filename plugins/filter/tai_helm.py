# Copyright: tai-deploy contributors
"""Filters tai_helm_pending_releases (the releases a stopped Helm operation left pending) and
tai_helm_deployed (whether a release has a deployed revision to roll back to).

``helm_info_results | tai_helm_pending_releases`` takes kubernetes.core.helm_info results (a
loop's ``results`` or a list of single results) and returns ``[{name, namespace, status}]`` for
each release whose last revision is ``pending-install``, ``pending-upgrade`` or
``pending-rollback`` (Helm's release statuses, pkg/release/common Status): Helm refuses any
operation on such a release until it is rolled back or uninstalled (roles/helm_release/tasks/
recover.yml).

``helm_info_result | tai_helm_deployed`` is true when the release has a deployed revision: it
is deployed, or it was left pending-upgrade/pending-rollback, which recover.yml rolls back to
that revision. Only such a release is upgraded atomically: Helm's rollback of a failed FIRST
install is an uninstall, which would delete what it created and hide why it failed.
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


DEPLOYED = ("deployed", "pending-upgrade", "pending-rollback")


def tai_helm_deployed(result: Mapping[str, Any] | None) -> bool:
    status = (result or {}).get("status") or {}
    return isinstance(status, Mapping) and status.get("status") in DEPLOYED


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_helm_pending_releases": tai_helm_pending_releases,
                "tai_helm_deployed": tai_helm_deployed}
