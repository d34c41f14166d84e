"""Prune: objects dropped from a role's plan are deleted from the cluster, and only objects
this project applied for that role (its ownership labels) are ever candidates.

Against the Kubernetes API TEST DOUBLE (tests/helpers/k8s_double.py, which serves discovery,
label-selected cluster-wide lists and DELETE of Services), through the project's client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.k8s_double import KubeApiDouble
from tai_deploy.k8s_api import ClusterAccess, KubeClient
from tai_deploy.prune import PruneError, delete, find, owner_selector, planned_refs

SERVICE_KIND = [{"apiVersion": "v1", "kind": "Service"},
                # not served by this API (no CRD installed): skipped, not an error
                {"apiVersion": "cert-manager.io/v1", "kind": "Certificate"}]


def svc(name: str, labels: dict[str, str], namespace: str = "tai-system") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"name": "grpc", "port": 50051}]}}


OURS = owner_selector("istio")


@pytest.fixture
def cluster() -> Iterator[tuple[KubeApiDouble, KubeClient]]:
    with KubeApiDouble(namespaces=("default", "tai-system", "monitoring")) as double:
        double.seed(
            svc("kept", OURS), svc("dropped", OURS), svc("dropped-too", OURS, "monitoring"),
            # another role's object, a Helm release's, an operator's: never candidates
            svc("other-role", owner_selector("monitoring")),
            svc("from-helm", {"app.kubernetes.io/managed-by": "Helm"}),
            svc("by-hand", {}))
        with KubeClient(ClusterAccess(server=double.url)) as client:
            yield double, client


def _plan(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests" / "tai-system"
    folder.mkdir(parents=True)
    (folder / "service-kept.yaml").write_text(yaml.safe_dump(svc("kept", OURS)))
    return tmp_path / "manifests"


def test_only_this_roles_objects_missing_from_the_plan_are_pruned(
        cluster: tuple[KubeApiDouble, KubeClient], tmp_path: Path) -> None:
    double, client = cluster
    keep = planned_refs([_plan(tmp_path)])
    assert keep == {"Service/tai-system/kept"}
    found = find(client, SERVICE_KIND, OURS, keep)
    assert [c.ref for c in found] == ["Service/monitoring/dropped-too",
                                      "Service/tai-system/dropped"]
    # finding deletes nothing (what check mode reports)
    assert double.find("Service", "tai-system", "dropped") is not None
    assert delete(client, found) == [c.ref for c in found]
    assert double.find("Service", "tai-system", "dropped") is None
    assert double.find("Service", "monitoring", "dropped-too") is None
    for name in ("kept", "other-role", "from-helm", "by-hand"):
        assert double.find("Service", "tai-system", name) is not None, name
    # a second run finds nothing left to prune
    assert find(client, SERVICE_KIND, OURS, keep) == []


def test_a_selector_without_the_ownership_labels_is_refused(
        cluster: tuple[KubeApiDouble, KubeClient]) -> None:
    _, client = cluster
    with pytest.raises(PruneError) as exc:
        find(client, SERVICE_KIND, {"app.kubernetes.io/managed-by": "tai-deploy"}, set())
    assert str(exc.value).startswith("a prune selects on both app.kubernetes.io/managed-by and "
                                     "tai-deploy.io/role")
