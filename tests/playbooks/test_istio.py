"""istio role: pinned Istio releases with production values, mesh-wide mTLS STRICT."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO
from helpers.platform_plan import REGIONS, host_failure, render

pytestmark = pytest.mark.playbook

RELEASES = ["istio-base", "istio-cni", "istio-egressgateway", "istio-ingressgateway", "istiod"]
LB = {"us-central1": "35.1.1.1", "europe-west1": "35.2.2.2", "asia-southeast1": "35.3.3.3"}


@pytest.mark.parametrize("region", REGIONS)
def test_releases_share_one_pinned_istio_version(region: str) -> None:
    plan = render()
    files = plan.files(region, "istio")
    assert [f.split("/")[1][:-5] for f in files if f.startswith("releases/")] == sorted(
        [*RELEASES, "cert-manager"])
    specs = [plan.release(region, "istio", r) for r in RELEASES]
    assert {s["version"] for s in specs} == {"1.28.0"}
    assert {s["namespace"] for s in specs} == {"istio-system"}
    assert {s["repository"] for s in specs} == {
        "https://istio-release.storage.googleapis.com/charts"}
    assert {s["name"]: s["chart"] for s in specs} == {
        "istio-base": "base", "istio-cni": "cni", "istiod": "istiod",
        "istio-ingressgateway": "gateway", "istio-egressgateway": "gateway"}


@pytest.mark.parametrize("region", REGIONS)
def test_istiod_is_ha_with_hpa_pdb_and_cni(region: str) -> None:
    values = render().values(region, "istio", "istiod")
    pilot = values["pilot"]
    assert pilot["autoscaleEnabled"] is True
    assert pilot["autoscaleMin"] >= 2
    assert pilot["replicaCount"] >= 2
    assert pilot["autoscaleMax"] >= pilot["autoscaleMin"]
    assert values["global"]["defaultPodDisruptionBudget"] == {"enabled": True}
    # The CNI node agent replaces istio-init, which needs NET_ADMIN and breaks restricted PSS.
    assert pilot["cni"] == {"enabled": True}
    assert values["global"]["platform"] == "gke"
    assert values["global"]["multiCluster"]["clusterName"] == region
    assert values["meshConfig"]["defaultConfig"]["holdApplicationUntilProxyStarts"] is True
    assert values["meshConfig"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert render().values(region, "istio", "istio-cni") == {"global": {"platform": "gke"}}


@pytest.mark.parametrize("region", REGIONS)
def test_gateways_are_ha_with_hpa_pdb_and_zone_spread(region: str) -> None:
    plan = render()
    for name, label, floor in (("istio-ingressgateway", "ingressgateway", 3),
                               ("istio-egressgateway", "egressgateway", 2)):
        values = plan.values(region, "istio", name)
        assert values["labels"] == {"istio": label}
        assert values["autoscaling"]["enabled"] is True
        assert values["autoscaling"]["minReplicas"] >= floor
        assert values["podDisruptionBudget"] == {"minAvailable": 1}
        spread = values["topologySpreadConstraints"][0]
        assert spread["topologyKey"] == "topology.kubernetes.io/zone"
        assert spread["labelSelector"]["matchLabels"] == {"istio": label}
    ingress = plan.values(region, "istio", "istio-ingressgateway")["service"]
    assert ingress["type"] == "ClusterIP", "the dns role's load balancer fronts the gateway"
    assert "loadBalancerIP" not in ingress
    neg = json.loads(ingress["annotations"]["cloud.google.com/neg"])
    assert neg == {"exposed_ports": {"443": {"name": "tai-istio-ingress-443"}}}
    assert {p["port"]: p["targetPort"] for p in ingress["ports"]} == \
        {15021: 15021, 443: 8443, 50051: 50051}
    assert plan.values(region, "istio", "istio-egressgateway")["service"]["type"] == "ClusterIP"


@pytest.mark.parametrize("region", REGIONS)
def test_mesh_wide_mtls_is_strict(region: str) -> None:
    objs = render().manifests(region, "istio")
    assert sorted(o["kind"] for o in objs) == ["Certificate", "ClusterIssuer",
                                               "PeerAuthentication"]
    (pa,) = [o for o in objs if o["kind"] == "PeerAuthentication"]
    # Validated against Istio's CRD schema at plan time (crd_schemas.py).
    assert pa["apiVersion"] == "security.istio.io/v1"
    assert pa["kind"] == "PeerAuthentication"
    # Mesh-wide = named default in the root namespace, without a selector.
    assert pa["metadata"] == {"name": "default", "namespace": "istio-system",
                              "labels": pa["metadata"]["labels"]}
    assert pa["spec"] == {"mtls": {"mode": "STRICT"}}


@pytest.mark.parametrize("region", REGIONS)
def test_the_gateway_certificate_is_owned_by_cert_manager(region: str) -> None:
    """istio-system/tai-tls-cert, the chart Gateway's credentialName, is a cert-manager
    Certificate from an ACME ClusterIssuer that proves the names with Cloud DNS DNS-01 records,
    written by cert-manager's Google service account through workload identity."""
    plan = render()
    objs = {o["kind"]: o for o in plan.manifests(region, "istio")}
    cert, issuer = objs["Certificate"], objs["ClusterIssuer"]
    chart = yaml.safe_load((REPO / "charts/tai-chart/values.yaml").read_text())["istio"]
    assert (cert["metadata"]["namespace"], cert["spec"]["secretName"]) == (
        chart["gateway"]["namespace"], chart["gateway"]["credentialName"])
    assert sorted(cert["spec"]["dnsNames"]) == sorted(chart["gateway"]["hosts"])
    assert cert["spec"]["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer",
                                         "name": issuer["metadata"]["name"]}
    assert "namespace" not in issuer["metadata"]  # cluster-scoped
    (solver,) = issuer["spec"]["acme"]["solvers"]
    # Ambient credentials: no serviceAccountSecretRef, the controller's workload identity.
    assert solver["dns01"] == {"cloudDNS": {"project": "tai-production"}}
    assert solver["selector"] == {"dnsZones": ["tai.example.com"]}
    release = plan.release(region, "istio", "cert-manager")
    assert (release["chart"], release["namespace"]) == ("cert-manager", "cert-manager")
    values = plan.values(region, "istio", "cert-manager")
    assert values["crds"] == {"enabled": True, "keep": True}
    assert values["serviceAccount"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "tai-cert-manager@tai-production.iam.gserviceaccount.com"}
    assert all(values[c]["replicaCount"] == 2 for c in ("webhook", "cainjector"))


def _charts_with(**changes: str) -> dict[str, Any]:
    pins: dict[str, Any] = copy.deepcopy(
        yaml.safe_load((REPO / "group_vars/all/versions.yml").read_text())["tai_charts"])
    for key, version in changes.items():
        pins[key]["version"] = version
    return pins


BAD: dict[str, dict[str, Any]] = {
    # Every Istio chart unpinned alike: the bundle refuses the range.
    "europe-west1": {"tai_charts": _charts_with(istio_base="1.28", istio_cni="1.28",
                                                istiod="1.28", istio_gateway="1.28")},
    "us-central1": {"tai_charts": _charts_with(istiod="1.27.3")},
    "asia-southeast1": {"istio_istiod_min_replicas": 6},
}


def test_bad_pins_and_sizes_are_refused_with_one_sentence() -> None:
    plan = render(("istio",), host_vars=BAD)
    assert plan.run.returncode != 0
    assert ("release istio-base: chart version '1.28' is not pinned to an exact version such as "
            "1.28.0") in host_failure(plan.run, "europe-west1")
    assert host_failure(plan.run, "us-central1") == (
        "Istio charts must share one version, but tai_charts has 1.27.3, 1.28.0 for "
        "istio_base, istio_cni, istiod, istio_gateway.")
    assert ("istio_istiod_min_replicas (6) is greater than istio_istiod_max_replicas (5) in "
            "asia-southeast1.") in host_failure(plan.run, "asia-southeast1")
    assert "Traceback" not in plan.run.output
    for region in REGIONS:
        assert not (plan.region(region) / "istio").exists()
