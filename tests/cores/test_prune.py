"""Prune: objects dropped from a role's plan are deleted from the cluster, and only objects
this project applied for that role (its ownership labels) are ever candidates.

Against the Kubernetes API TEST DOUBLE (tests/helpers/k8s_double/, which serves discovery,
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


def test_the_module_lists_in_check_mode_and_deletes_otherwise(
        cluster: tuple[KubeApiDouble, KubeClient], tmp_path: Path) -> None:
    """tai_prune through ansible-playbook (check mode, then for real), one playbook run."""
    import json

    from helpers.ansible_run import run_playbook

    double, _ = cluster
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "double",
        "clusters": [{"name": "double", "cluster": {"server": double.url}}],
        "users": [{"name": "tester", "user": {}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "tester"}}]}))
    args = {"role": "istio", "kinds": SERVICE_KIND, "manifest_dirs": [str(_plan(tmp_path))],
            "kubeconfig": str(kubeconfig), "context": "double"}
    book = tmp_path / "prune.yml"
    book.write_text(yaml.safe_dump([{
        "name": "Prune", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "List", "tai_prune": args, "check_mode": True, "register": "listed"},
            {"name": "Delete", "tai_prune": args, "register": "deleted"},
            {"name": "Keep the results", "ansible.builtin.copy": {
                "dest": str(tmp_path / "result.json"),
                "content": "{{ {'listed': listed.pruned, 'deleted': deleted.pruned, "
                           "'changed': deleted.changed} | to_json }}"}}]}]))
    run = run_playbook(str(book), "-i", "localhost,", "-c", "local")
    assert run.returncode == 0, run.output[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    expected = ["Service/monitoring/dropped-too", "Service/tai-system/dropped"]
    assert result == {"listed": expected, "deleted": expected, "changed": True}
    assert double.find("Service", "tai-system", "kept") is not None
