"""The Kubernetes API test double serving the apply path: CRDs, custom resources against their
CRD's schema, server-side apply, watch, Secrets in protobuf and the workload controllers.
Requests go through plain HTTP as the clients send them (urllib), so the answers are checked
as a client sees them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.k8s_double import KubeApiDouble

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "required": ["size"], "properties": {
                         "size": {"type": "integer", "minimum": 1},
                         "port": {"x-kubernetes-int-or-string": True}}}}}}}]}}


@pytest.fixture
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(pod_ready_delay=0.05) as d:
        yield d


def call(double: KubeApiDouble, method: str, path: str, body: Any = None,
         content_type: str = "application/json") -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else (
        json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(double.url + path, data=data, method=method,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_crd_is_served_once_applied_and_its_objects_follow_its_schema(
        double: KubeApiDouble) -> None:
    assert call(double, "GET", "/apis/example.com/v1")[0] == 404
    status, crd = call(double, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                       CRD)
    assert status == 201
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]} == {
        "NamesAccepted": "True", "Established": "True"}
    groups = call(double, "GET", "/apis")[1]["groups"]
    assert {"name": "example.com", "versions": [{"groupVersion": "example.com/v1",
                                                 "version": "v1"}],
            "preferredVersion": {"groupVersion": "example.com/v1", "version": "v1"}} in groups
    base = "/apis/example.com/v1/namespaces/default/widgets"
    good = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
            "spec": {"size": 2, "port": "http"}}
    assert call(double, "POST", base, good)[0] == 201
    status, answer = call(double, "POST", base, {**good, "metadata": {"name": "b"},
                                                 "spec": {"size": 0}})
    assert (status, answer["reason"]) == (422, "Invalid")
    assert "spec.size" in answer["message"]
    status, answer = call(double, "POST", base, {**good, "metadata": {"name": "c"},
                                                 "spec": {"size": 1, "colour": "red"}})
    assert status == 400
    assert 'strict decoding error: unknown field "spec.colour"' in answer["message"]
    # the CRD gone, its kind and its objects are gone
    call(double, "DELETE",
         "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert call(double, "GET", base)[0] == 404


def test_server_side_apply_creates_then_merges_and_a_rerun_changes_nothing(
        double: KubeApiDouble) -> None:
    path = "/api/v1/namespaces/default/configmaps/settings?fieldManager=helm"
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: '1'\n"
    status, first = call(double, "PATCH", path, doc, "application/apply-patch+yaml")
    assert (status, first["data"]) == (201, {"a": "1"})
    status, again = call(double, "PATCH", path, doc, "application/apply-patch+yaml")
    assert status == 200
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    status, bad = call(double, "PATCH", path, b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                       b"  name: settings\nspec: {}\n", "application/apply-patch+yaml")
    assert status == 400 and 'unknown field "spec"' in bad["message"]


def test_a_secret_sent_in_protobuf_is_stored_like_helm_release_storage_sends_it(
        double: KubeApiDouble) -> None:
    def field(number: int, value: bytes) -> bytes:
        return bytes([number << 3 | 2, len(value)]) + value

    meta = field(1, b"sh.helm.release.v1.x.v1") + field(11, field(1, b"owner") + field(2, b"helm"))
    secret = field(1, meta) + field(2, field(1, b"release") + field(2, b"\x1f\x8b")) + field(
        3, b"helm.sh/release.v1")
    body = b"k8s\x00" + field(1, field(1, b"v1") + field(2, b"Secret")) + field(2, secret)
    status, stored = call(double, "POST", "/api/v1/namespaces/default/secrets", body,
                          "application/vnd.kubernetes.protobuf")
    assert status == 201, stored
    assert stored["type"] == "helm.sh/release.v1"
    assert stored["metadata"]["labels"] == {"owner": "helm"}
    assert stored["data"] == {"release": "H4s="}


def test_a_statefulset_gets_ready_pods_and_a_job_completes(double: KubeApiDouble) -> None:
    template = {"metadata": {"labels": {"app": "v"}},
                "spec": {"containers": [{"name": "v", "image": "vault:1"}]}}
    call(double, "POST", "/apis/apps/v1/namespaces/default/statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "v"},
        "spec": {"replicas": 2, "serviceName": "v", "selector": {"matchLabels": {"app": "v"}},
                 "template": template}})
    call(double, "POST", "/apis/batch/v1/namespaces/default/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "j", "image": "busybox:1"}]}}}})
    double.wait_for(lambda: (double.find("StatefulSet", "default", "v") or {}).get(
        "status", {}).get("readyReplicas") == 2)
    pods = call(double, "GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dv")[1]
    assert sorted(p["metadata"]["name"] for p in pods["items"]) == ["v-0", "v-1"]
    assert all(p["status"]["phase"] == "Running" for p in pods["items"])
    double.wait_for(lambda: any(c["type"] == "Complete" for c in (
        call(double, "GET", "/apis/batch/v1/namespaces/default/jobs/j")[1]
        .get("status", {}).get("conditions") or [])))


def test_a_watch_streams_the_initial_objects_then_the_changes(double: KubeApiDouble) -> None:
    call(double, "POST", "/api/v1/namespaces/default/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}})
    with urllib.request.urlopen(double.url + "/api/v1/namespaces/default/configmaps?watch=true"
                                "&timeoutSeconds=1&sendInitialEvents=true", timeout=10) as resp:
        call(double, "POST", "/api/v1/namespaces/default/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}})
        events = [json.loads(line) for line in resp.read().splitlines() if line]
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
        ("ADDED", "one"), ("BOOKMARK", None), ("ADDED", "two")]
    assert events[1]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"}


def _deployment(name: str, image: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}},
                                  "spec": {"containers": [{"name": app, "image": image}]}}}}


def _conditions(double: KubeApiDouble, ns: str, name: str) -> dict[str, dict[str, str]]:
    dep = double.find("Deployment", ns, name) or {}
    return {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}


def test_a_failing_webhook_without_endpoints_refuses_pods_until_its_service_has_one(
        double: KubeApiDouble) -> None:
    call(double, "POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "apps", "labels": {"inject": "yes"}}})
    # the webhook's backend: a Deployment whose pods never become available (tag -never)
    call(double, "POST", "/apis/apps/v1/namespaces/default/deployments",
         _deployment("injector", "injector:1-never", "injector"))
    call(double, "POST", "/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "injector-svc"},
        "spec": {"selector": {"app": "injector"}, "ports": [{"port": 443}]}})
    status, _ = call(
        double, "POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration", "metadata": {"name": "injector-cfg"},
            "webhooks": [{"name": "inject.example.com", "admissionReviewVersions": ["v1"],
                          "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 30,
                          "namespaceSelector": {"matchLabels": {"inject": "yes"}},
                          "clientConfig": {"service": {"name": "injector-svc",
                                                       "namespace": "default",
                                                       "path": "/mutate"}},
                          "rules": [{"operations": ["CREATE"], "apiGroups": [""],
                                     "apiVersions": ["v1"], "resources": ["pods"]}]}]})
    assert status == 201
    call(double, "POST", "/apis/apps/v1/namespaces/apps/deployments", _deployment(
        "api", "api:1", "api"))
    call(double, "POST", "/apis/apps/v1/namespaces/default/deployments", _deployment(
        "outside", "api:1", "outside"))
    call(double, "POST", "/apis/apps/v1/namespaces/apps/statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}})
    double.wait_for(lambda: "ReplicaFailure" in _conditions(double, "apps", "api"))
    failure = _conditions(double, "apps", "api")["ReplicaFailure"]
    # the API server's answer to the pod creation, as the Deployment controller reports it
    assert (failure["status"], failure["reason"]) == ("True", "FailedCreate")
    assert failure["message"] == (
        'Internal error occurred: failed calling webhook "inject.example.com": failed to call '
        'webhook: Post "https://injector-svc.default.svc:443/mutate?timeout=30s": no endpoints '
        'available for service "injector-svc"')
    assert "readyReplicas" not in double.get("Deployment", "apps", "api")["status"]
    # a namespace the selector does not match is not affected
    double.wait_for(lambda: _conditions(double, "default", "outside").get(
        "Available", {}).get("status") == "True")
    # the StatefulSet controller records why it could not create its pod
    double.wait_for(lambda: bool(double.objects("events", "apps")))
    event = double.objects("events", "apps")[0]
    assert (event["reason"], event["involvedObject"]["name"]) == ("FailedCreate", "db")
    assert "create Pod db-0 in StatefulSet db failed error: Internal error occurred" in (
        event["message"])
    assert call(double, "GET", "/api/v1/namespaces/apps/pods")[1]["items"] == []

    # the webhook's backend available again: the controllers create the pods
    call(double, "PATCH", "/apis/apps/v1/namespaces/default/deployments/injector",
         {"spec": {"template": {"spec": {"containers": [
             {"name": "injector", "image": "injector:1"}]}}}},
         "application/strategic-merge-patch+json")
    double.wait_for(lambda: _conditions(double, "apps", "api").get(
        "Available", {}).get("status") == "True")
    assert "ReplicaFailure" not in _conditions(double, "apps", "api")
    double.wait_for(lambda: (double.find("StatefulSet", "apps", "db") or {}).get(
        "status", {}).get("readyReplicas") == 1)


CERT_MANAGER_CRDS = (Path(__file__).parent / "helpers" / "standin_charts" / "cert-manager"
                     / "crds" / "cert-manager.io.yaml")


def test_a_certificate_is_issued_once_its_issuer_exists(double: KubeApiDouble) -> None:
    for crd in yaml.safe_load_all(CERT_MANAGER_CRDS.read_text()):
        if crd:
            call(double, "POST",
                 "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    base = "/apis/cert-manager.io/v1"
    status, _ = call(double, "POST", base + "/namespaces/default/certificates", {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "gw"},
        "spec": {"secretName": "gw-tls", "dnsNames": ["api.example.com", "*.example.com"],
                 "secretTemplate": {"labels": {"team": "a"}},
                 "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer",
                               "name": "acme"}}})
    assert status == 201

    def ready() -> dict[str, Any]:
        cert = call(double, "GET", base + "/namespaces/default/certificates/gw")[1]
        return next((c for c in (cert.get("status") or {}).get("conditions") or []
                     if c["type"] == "Ready"), {})

    double.wait_for(lambda: ready().get("status") == "False")
    assert ready()["message"] == ('Referenced "ClusterIssuer" not found: '
                                  'clusterissuer.cert-manager.io "acme" not found')
    assert call(double, "GET", "/api/v1/namespaces/default/secrets/gw-tls")[0] == 404
    call(double, "POST", base + "/clusterissuers", {
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "acme"},
        "spec": {"selfSigned": {}}})
    double.wait_for(lambda: ready().get("status") == "True")
    status, secret = call(double, "GET", "/api/v1/namespaces/default/secrets/gw-tls")
    assert status == 200
    assert secret["type"] == "kubernetes.io/tls"
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(secret["data"])
    assert secret["metadata"]["labels"]["team"] == "a"
    assert secret["metadata"]["annotations"]["cert-manager.io/certificate-name"] == "gw"
