"""Fidelity of the Kubernetes API test double: real clients against it, real answers from it.

kubectl (the real binary) and the Kubernetes Python client (what kubernetes.core uses) must
work against the double unchanged, and it must refuse what a real API server refuses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.bluegreen_env import NAMESPACE, chart_objects
from helpers.k8s_double import Fault, KubeApiDouble
from tai_deploy.bluegreen import scaledobject_path
from tai_deploy.k8s_api import ApiError, ClusterAccess, KubeClient, deployment_path, service_path

KUBECTL = Path(sys.executable).parent / "kubectl"


@pytest.fixture
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(ready_delay=0.1) as d:
        d.seed(*chart_objects("governor", 50051))
        d.wait_for(lambda: (d.find("Deployment", NAMESPACE, "governor-blue") or {})
                   .get("status", {}).get("availableReplicas") == 3)
        yield d


@pytest.fixture
def client(double: KubeApiDouble) -> Iterator[KubeClient]:
    with KubeClient(ClusterAccess(server=double.url)) as c:
        yield c


def kubectl(double: KubeApiDouble, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin"),
           "KUBECONFIG": str(tmp_path / "none")}
    return subprocess.run([str(KUBECTL), "--server", double.url, *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_kubectl_get_deployments_as_json(double: KubeApiDouble, tmp_path: Path) -> None:
    before = len(double.requests)
    proc = kubectl(double, tmp_path, "get", "deploy", "-n", NAMESPACE, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    items = json.loads(proc.stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == ["governor-blue"]
    dep = items[0]
    assert dep["kind"] == "Deployment" and dep["apiVersion"] == "apps/v1"
    assert dep["status"]["availableReplicas"] == 3
    assert dep["status"]["observedGeneration"] == dep["metadata"]["generation"] == 1
    # Server-side defaults are there, as from a real API server.
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["progressDeadlineSeconds"] == 600
    paths = [r.path for r in double.requests[before:]]
    assert "/api" in paths and "/apis" in paths  # kubectl's discovery was served
    assert paths[-1] == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"


def test_kubectl_get_service_and_scale_subresource(double: KubeApiDouble,
                                                   tmp_path: Path) -> None:
    proc = kubectl(double, tmp_path, "get", "svc", "governor", "-n", NAMESPACE, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    svc = json.loads(proc.stdout)
    assert svc["spec"]["selector"] == {"app": "governor", "slot": "blue"}
    assert svc["spec"]["clusterIP"].startswith("10.96.")
    proc = kubectl(double, tmp_path, "scale", "deploy/governor-blue", "--replicas=2",
                   "-n", NAMESPACE)
    assert proc.returncode == 0, proc.stderr
    scale_calls = [r for r in double.requests if r.path.endswith("/governor-blue/scale")]
    assert scale_calls and scale_calls[-1].method == "PATCH"
    assert double.get("Deployment", NAMESPACE, "governor-blue")["spec"]["replicas"] == 2


def test_kubectl_reports_a_missing_object_like_a_real_server(double: KubeApiDouble,
                                                              tmp_path: Path) -> None:
    proc = kubectl(double, tmp_path, "get", "deploy", "nope", "-n", NAMESPACE)
    assert proc.returncode != 0
    assert 'deployments.apps "nope" not found' in proc.stderr


def test_kubernetes_python_client_discovers_and_reads(double: KubeApiDouble) -> None:
    from kubernetes import client as k8s_client
    from kubernetes.dynamic import DynamicClient

    configuration = k8s_client.Configuration()
    configuration.host = double.url
    dynamic = DynamicClient(k8s_client.ApiClient(configuration))  # type: ignore[no-untyped-call]
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    names = [d.metadata.name for d in deployments.get(namespace=NAMESPACE).items]
    assert names == ["governor-blue"]
    services = dynamic.resources.get(api_version="v1", kind="Service")
    listed = services.get(namespace=NAMESPACE, label_selector="app=governor,slot=blue").items
    assert [s.metadata.name for s in listed] == ["governor"]


def test_stale_resource_version_is_refused_with_409(double: KubeApiDouble,
                                                    client: KubeClient) -> None:
    path = service_path(NAMESPACE, "governor")
    stale = client.get(path)["metadata"]["resourceVersion"]
    client.patch(path, {"metadata": {"labels": {"touched": "yes"}}})
    with pytest.raises(ApiError) as err:
        client.patch(path, {"metadata": {"resourceVersion": stale},
                            "spec": {"selector": {"slot": "green"}}})
    assert err.value.status == 409 and err.value.conflict
    assert "the object has been modified" in err.value.api_message
    assert double.get("Service", NAMESPACE, "governor")["spec"]["selector"]["slot"] == "blue"


def test_no_op_update_keeps_the_resource_version(client: KubeClient) -> None:
    path = service_path(NAMESPACE, "governor")
    before = client.get(path)["metadata"]["resourceVersion"]
    after = client.patch(path, {"spec": {"selector": {"slot": "blue"}}})
    assert after["metadata"]["resourceVersion"] == before
    changed = client.patch(path, {"metadata": {"labels": {"x": "y"}}})
    assert int(changed["metadata"]["resourceVersion"]) > int(before)


def test_schema_and_server_validation(double: KubeApiDouble, client: KubeClient) -> None:
    path = deployment_path(NAMESPACE, "governor-blue")
    with pytest.raises(ApiError) as unknown:
        client.patch(path, {"spec": {"replica": 2}})
    assert unknown.value.status == 400
    assert 'strict decoding error: unknown field "spec.replica"' in unknown.value.api_message
    with pytest.raises(ApiError) as mistyped:
        client.patch(path, {"spec": {"replicas": "two"}})
    assert mistyped.value.status == 400
    with pytest.raises(ApiError) as immutable:
        client.patch(path, {"spec": {"selector": {"matchLabels": {"slot": "green"}}}})
    assert immutable.value.status == 422 and "field is immutable" in immutable.value.api_message
    body = chart_objects("governor", 50051, tags={"green": "v2"}, active="green")[0]
    body["spec"]["template"]["metadata"]["labels"]["slot"] = "blue"
    with pytest.raises(ApiError) as mismatch:
        client.create(deployment_path(NAMESPACE), body)
    assert mismatch.value.status == 422
    assert "`selector` does not match template `labels`" in mismatch.value.api_message
    with pytest.raises(ApiError) as label:
        client.patch(service_path(NAMESPACE, "governor"),
                     {"spec": {"selector": {"slot": "not a label"}}})
    assert label.value.status == 422
    with pytest.raises(ApiError) as exists:
        client.create(service_path(NAMESPACE), chart_objects("governor", 50051)[1])
    assert exists.value.status == 409 and exists.value.reason == "AlreadyExists"
    assert double.get("Deployment", NAMESPACE, "governor-blue")["spec"]["replicas"] == 3


def test_scaled_objects_are_stored_patched_and_checked_structurally(
        double: KubeApiDouble, client: KubeClient, tmp_path: Path) -> None:
    """KEDA's CRD: the same REST rules as the built-in kinds, structural checks only."""
    body: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "governor-blue", "namespace": NAMESPACE,
                     "annotations": {"autoscaling.keda.sh/paused-replicas": "0"}},
        "spec": {"scaleTargetRef": {"name": "governor-blue"}, "minReplicaCount": 3,
                 "triggers": [{"type": "cpu", "metadata": {"value": "70"}}]}}
    created = client.create(scaledobject_path(NAMESPACE), body)
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    path = scaledobject_path(NAMESPACE, "governor-blue")
    stale = created["metadata"]["resourceVersion"]
    resumed = client.patch(path, {"metadata": {"annotations": {
        "autoscaling.keda.sh/paused-replicas": None}, "resourceVersion": stale}})
    assert not resumed["metadata"].get("annotations")
    assert resumed["metadata"]["generation"] == 1  # metadata only: no new generation
    with pytest.raises(ApiError) as conflict:
        client.patch(path, {"metadata": {"resourceVersion": stale, "labels": {"a": "b"}}})
    assert conflict.value.status == 409
    assert double.get("ScaledObject", NAMESPACE, "governor-blue")["spec"]["minReplicaCount"] == 3
    bad_specs: list[tuple[dict[str, Any], str]] = [
        ({"triggers": []}, "spec.scaleTargetRef.name: Required value"),
        ({"scaleTargetRef": {"name": "x"}}, "spec.triggers: Required value")]
    for bad, message in bad_specs:
        broken = {**body, "metadata": {"name": "broken", "namespace": NAMESPACE}, "spec": bad}
        with pytest.raises(ApiError) as invalid:
            client.create(scaledobject_path(NAMESPACE), broken)
        assert invalid.value.status == 422 and message in invalid.value.api_message
    with pytest.raises(ApiError) as missing:
        client.get(scaledobject_path(NAMESPACE, "scheduler-green"))
    assert missing.value.not_found
    assert 'scaledobjects.keda.sh "scheduler-green" not found' in missing.value.api_message
    # kubectl finds the kind through discovery, as with a real cluster running KEDA.
    proc = kubectl(double, tmp_path, "get", "scaledobjects.keda.sh", "-n", NAMESPACE,
                   "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert [i["metadata"]["name"] for i in json.loads(proc.stdout)["items"]] == ["governor-blue"]


def test_deployment_controller_rolls_out_and_reports_progress_deadline(
        double: KubeApiDouble, client: KubeClient) -> None:
    path = deployment_path(NAMESPACE, "governor-blue")
    dep = client.patch(path, {"spec": {"progressDeadlineSeconds": 1, "template": {"spec": {
        "containers": [{"name": "governor", "image": "gcr.io/ggen-project/governor:v2"}]}}}},
        "strategic")
    assert dep["metadata"]["generation"] == 2
    assert dep["status"]["observedGeneration"] == 1  # not observed yet

    def status() -> dict[str, Any]:
        return dict(double.get("Deployment", NAMESPACE, "governor-blue")["status"])

    double.wait_for(lambda: status().get("observedGeneration") == 2)
    double.wait_for(lambda: status().get("updatedReplicas") == 3
                    and status().get("availableReplicas") == 3
                    and status().get("replicas") == 3)
    client.patch(path, {"spec": {"template": {"spec": {"containers": [
        {"name": "governor", "image": "gcr.io/ggen-project/governor:v3-never"}]}}}},
        "strategic")
    double.wait_for(lambda: status().get("updatedReplicas") == 3
                    and status().get("replicas") == 6)
    # The old template's ready pods keep serving while the new ones never get ready.
    assert status()["availableReplicas"] == 3
    double.wait_for(lambda: any(c["reason"] == "ProgressDeadlineExceeded"
                                for c in status()["conditions"]), timeout=5)


def _check(address: str) -> str:
    """One health call on a NEW connection (gRPC shares subchannels between channels)."""
    with grpc.insecure_channel(address,
                               options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=2)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def test_kube_proxy_moves_new_connections_only(double: KubeApiDouble,
                                               client: KubeClient) -> None:
    """Why the scale-down delay exists: open HTTP/2 connections ignore a selector change."""
    green = chart_objects("governor", 50051, tags={"green": "v1.1.0"}, active="green")[0]
    client.create(deployment_path(NAMESPACE), green)
    double.wait_for(lambda: (double.find("Deployment", NAMESPACE, "governor-green") or {})
                    .get("status", {}).get("availableReplicas") == 3)
    address = double.endpoint(NAMESPACE, "governor")
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
    client.patch(service_path(NAMESPACE, "governor"), {"spec": {"selector": {"slot": "green"}}})
    blue_before = len(double.health_answers(NAMESPACE, "governor-blue"))
    stub.Check(health_pb2.HealthCheckRequest(), timeout=2)  # the old connection: still blue
    assert len(double.health_answers(NAMESPACE, "governor-blue")) == blue_before + 1
    green_before = len(double.health_answers(NAMESPACE, "governor-green"))
    assert _check(address) == "SERVING"  # a new connection: green
    assert len(double.health_answers(NAMESPACE, "governor-green")) == green_before + 1
    channel.close()
    # Scaled to zero, the slot's pods are gone: nothing accepts its connections any more.
    client.patch(deployment_path(NAMESPACE, "governor-green"), {"spec": {"replicas": 0}})
    double.wait_for(lambda: not double.get("Deployment", NAMESPACE, "governor-green")
                    ["status"].get("replicas"))
    with pytest.raises(grpc.RpcError):
        _check(address)


def test_fault_injection(double: KubeApiDouble, client: KubeClient) -> None:
    path = service_path(NAMESPACE, "governor")
    double.add_fault(Fault("GET", path, status=503, reason="ServiceUnavailable", times=2))
    assert client.get(path)["metadata"]["name"] == "governor"  # retried after 503
    double.add_fault(Fault("PATCH", path, action="drop_after"))
    with pytest.raises(Exception, match="cannot reach the API server"):
        client.patch(path, {"metadata": {"labels": {"dropped": "but-applied"}}})
    assert double.get("Service", NAMESPACE, "governor")["metadata"]["labels"]["dropped"] == \
        "but-applied"
    double.add_fault(Fault("PATCH", path, action="touch"))
    current = client.get(path)["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as err:
        client.patch(path, {"metadata": {"resourceVersion": current, "labels": {"a": "b"}}})
    assert err.value.status == 409


def test_bearer_token_is_required_when_configured() -> None:
    with KubeApiDouble(token="s3cret") as d:
        with KubeClient(ClusterAccess(server=d.url)) as anonymous, \
                pytest.raises(ApiError) as err:
            anonymous.get("/api")
        assert err.value.status == 401
        with KubeClient(ClusterAccess(server=d.url, token="s3cret")) as authed:
            assert authed.get("/api")["versions"] == ["v1"]


def test_status_subresource_only_changes_status(client: KubeClient) -> None:
    path = deployment_path(NAMESPACE, "governor-blue")
    current = client.get(path)
    current["spec"]["replicas"] = 7
    current["status"] = {**current["status"], "observedGeneration": 1}
    client.request("PUT", path + "/status", body=current)
    assert client.get(path)["spec"]["replicas"] == 3


LEASES = "/apis/coordination.k8s.io/v1/namespaces/tai-system/leases"


def test_leases_are_validated_like_the_other_kinds(double: KubeApiDouble,
                                                   client: KubeClient) -> None:
    spec = {"holderIdentity": "me", "leaseDurationSeconds": 30,
            "acquireTime": "2026-12-01T20:00:00.000000Z",
            "renewTime": "2026-12-01T20:00:00.000000Z"}
    made = client.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                  "metadata": {"name": "lock"}, "spec": spec})
    assert made["spec"] == spec and "status" not in made and "generation" not in made["metadata"]
    with pytest.raises(ApiError) as unknown:
        client.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                               "metadata": {"name": "bad"}, "spec": {"holder": "me"}})
    assert unknown.value.status == 400 and 'unknown field "spec.holder"' in str(unknown.value)
    with pytest.raises(ApiError) as mistyped:
        client.patch(f"{LEASES}/lock", {"spec": {"leaseDurationSeconds": "30"}})
    assert mistyped.value.status == 400
    with pytest.raises(ApiError) as stale:
        client.patch(f"{LEASES}/lock", {"metadata": {"resourceVersion": "1"},
                                        "spec": {"holderIdentity": "you"}})
    assert stale.value.status == 409
    kinds = {r["kind"] for r in client.get("/apis/coordination.k8s.io/v1")["resources"]}
    assert kinds == {"Lease"}


def test_fault_injection_on_the_nth_matching_request(double: KubeApiDouble,
                                                     client: KubeClient) -> None:
    path = service_path(NAMESPACE, "governor")
    fault = double.add_fault(Fault("PATCH", path, body='"selector"', skip=1, status=500,
                                   reason="InternalError", message="etcd down"))
    client.patch(path, {"metadata": {"labels": {"x": "1"}}})  # no selector: not matched
    client.patch(path, {"spec": {"selector": {"slot": "blue"}}})  # the first match: skipped
    with pytest.raises(ApiError) as err:
        client.patch(path, {"spec": {"selector": {"slot": "blue"}}})
    assert err.value.status == 500 and "etcd down" in str(err.value) and fault.hits == 1
    double.add_fault(Fault("PATCH", path, action="reset"))
    with pytest.raises(Exception, match="cannot reach the API server"):
        client.patch(path, {"metadata": {"labels": {"reset": "not-applied"}}})
    assert "reset" not in double.get("Service", NAMESPACE, "governor")["metadata"]["labels"]
    double.add_fault(Fault("PATCH", path, action="delay", delay=0.3))
    client.patch(path, {"metadata": {"labels": {"late": "yes"}}})
    late = next(r for r in reversed(double.requests) if r.method == "PATCH")
    assert late.status == 200
    assert double.get("Service", NAMESPACE, "governor")["metadata"]["labels"]["late"] == "yes"
    double.add_fault(Fault("GET", path, status=429, reason="TooManyRequests", retry_after=0.2))
    assert client.get(path)["metadata"]["name"] == "governor"  # waited Retry-After, retried
    statuses = [r.status for r in double.requests if r.method == "GET" and r.path == path]
    assert statuses[-2:] == [429, 200]


def test_the_thin_transport_of_the_swap_module_answers_alike() -> None:
    """KubeClient(thin=True), the blue-green swap's requests path: same answers and errors."""
    with KubeApiDouble(token="s3cret") as d:
        d.seed(*chart_objects("governor", 50051))
        path = service_path(NAMESPACE, "governor")
        with KubeClient(ClusterAccess(server=d.url), thin=True) as anonymous, \
                pytest.raises(ApiError) as err:
            anonymous.get("/api")
        assert err.value.status == 401
        with KubeClient(ClusterAccess(server=d.url, token="s3cret"), thin=True) as thin, \
                KubeClient(ClusterAccess(server=d.url, token="s3cret")) as full:
            assert thin.get(path) == full.get(path)
            d.add_fault(Fault("GET", path, status=503, reason="ServiceUnavailable", times=2))
            assert thin.get(path)["metadata"]["name"] == "governor"  # retried after 503
            patched = thin.patch(path, {"metadata": {"labels": {"thin": "yes"}}})
            assert patched["metadata"]["labels"]["thin"] == "yes"
            with pytest.raises(ApiError) as strict:
                thin.patch(path, {"spec": {"selectr": {}}})
            assert strict.value.status == 400 and "selectr" in str(strict.value)
    with pytest.raises(Exception, match="cannot reach the API server"), \
            KubeClient(ClusterAccess(server=d.url), thin=True) as gone:
        gone.get("/api")
