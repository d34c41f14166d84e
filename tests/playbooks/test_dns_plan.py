"""The dns role and playbooks/drain-region.yml.

Plan: playbooks/traffic.yml for the three regions, once (module fixture), checked against the
load balancer and DNS of docs/architecture.md. Drain and restore: the real playbook in apply
mode against the loopback TEST DOUBLE of the Cloud DNS API; a restore reads the gateway's
cert-manager Certificate from a Kubernetes API TEST DOUBLE (tests/helpers/gateway_cluster.py),
as the role's apply does before it publishes a region.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.ansible_run import PlaybookRun, run_playbook
from helpers.gateway_cluster import gateway_cluster
from helpers.gcp_double import GcpDouble, serve
from helpers.gcp_plan import REGIONS, load, render

INVENTORY_ADDRESSES = {"us-central1": "35.1.1.1", "europe-west1": "35.2.2.2",
                  "asia-southeast1": "35.3.3.3"}
COMPUTE = "https://www.googleapis.com/compute/v1/projects/tai-production"
PODS = {"us-central1": "10.4.0.0/14", "europe-west1": "10.20.0.0/14",
        "asia-southeast1": "10.36.0.0/14"}
PROJECT, ZONE, NAME = "tai-production", "tai-example-com", "api.tai.example.com."


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("build")
    render(root, "playbooks/traffic.yml")
    return root


def body(plan: Path, region: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = load(plan, region, "dns", name)
    return data


@pytest.mark.parametrize("region", REGIONS)
def test_load_balancer_matches_the_architecture(plan: Path, region: str) -> None:
    prefix = f"tai-{region}"
    hc = body(plan, region, "health-check.json")
    # gRPC health (grpc.health.v1 Check of tai.Governor), not TCP: a TCP check passes whenever
    # Envoy accepts a connection, even when nothing behind it can serve; over TLS, which the
    # gateway's health listener terminates (compute v1 HealthCheck.type GRPC_WITH_TLS with
    # grpcTlsHealthCheck, per Google's discovery document).
    assert hc["type"] == "GRPC_WITH_TLS" and "tcpHealthCheck" not in hc
    assert hc["grpcTlsHealthCheck"] == {"port": 50051, "portSpecification": "USE_FIXED_PORT",
                                     "grpcServiceName": "tai.Governor"}
    assert (hc["checkIntervalSec"], hc["timeoutSec"], hc["healthyThreshold"],
            hc["unhealthyThreshold"]) == (10, 5, 2, 3)
    address = body(plan, region, "address.json")
    # Google allocates a global external address: the body never names one.
    assert "address" not in address
    assert address["addressType"] == "EXTERNAL" and "region" not in address  # global
    backend = body(plan, region, "backend-service.json")
    assert backend["protocol"] == "TCP"
    assert backend["healthChecks"] == [f"{COMPUTE}/global/healthChecks/{hc['name']}"]
    zones = [b["group"].split("/zones/")[1].split("/")[0] for b in backend["backends"]]
    assert zones == [f"{region}-{z}" for z in ("b", "c", "d")] if region == "europe-west1" \
        else zones == [f"{region}-{z}" for z in ("a", "b", "c")]
    assert all(b["group"].endswith("/networkEndpointGroups/tai-istio-ingress-443")
               and b["balancingMode"] == "CONNECTION" for b in backend["backends"])
    proxy = body(plan, region, "target-tcp-proxy.json")
    assert proxy["service"] == f"{COMPUTE}/global/backendServices/{backend['name']}"
    rule = body(plan, region, "forwarding-rule.json")
    assert rule["portRange"] == "443-443"
    assert rule["IPProtocol"] == "TCP"
    # the forwarding rule names the address resource; Google resolves it to the allocated IP
    assert rule["IPAddress"] == f"projects/tai-production/global/addresses/{address['name']}"
    assert rule["target"] == f"{COMPUTE}/global/targetTcpProxies/{proxy['name']}"
    assert rule["loadBalancingScheme"] == backend["loadBalancingScheme"]
    firewall = body(plan, region, "firewall.json")
    assert firewall["allowed"] == [{"IPProtocol": "tcp", "ports": ["8443", "50051"]}]
    # Google's proxies and health checkers reach the NEG endpoints (pod IPs) only, on tai-vpc
    assert firewall["sourceRanges"] == ["35.191.0.0/16", "130.211.0.0/22"]
    assert firewall["destinationRanges"] == [PODS[region]]
    assert firewall["network"] == "projects/tai-production/global/networks/tai-vpc"
    assert all(name.startswith(prefix) for name in (hc["name"], backend["name"],
                                                    proxy["name"], rule["name"]))


def test_one_geo_record_set_with_an_item_per_region(plan: Path) -> None:
    zones = {json_key(body(plan, r, "managed-zone.json")) for r in REGIONS}
    assert zones == {("tai-example-com", "tai.example.com.")}
    geo = [body(plan, r, "geo-item.json") for r in REGIONS]
    # Every region writes into the same record set: same zone, name, type and TTL.
    assert {(g["managedZone"], g["name"], g["type"], g["ttl"]) for g in geo} == {
        (ZONE, NAME, "A", 60)}
    assert {g["item"]["location"]: g["item"]["rrdatas"] for g in geo} == {
        r: [a] for r, a in INVENTORY_ADDRESSES.items()}  # keyed by GCP region, not continent
    assert {g["state"] for g in geo} == {"active"}


def json_key(zone: dict[str, Any]) -> tuple[str, str]:
    return zone["name"], zone["dnsName"]


@pytest.mark.parametrize(("extra", "message"), [
    # The validation play answers first, with the rules of every role input.
    (("-l", "europe-west1", "-e", "dns_region_state=paused"),
     "dns_region_state of region europe-west1 is 'paused'; it must be one of active, drained."),
    (("-l", "europe-west1"), "dns_region_state must be drained or active (got nothing)"),
    (("-l", "europe-west1,us-central1", "-e", "dns_region_state=drained"),
     "Drain one region at a time (us-central1, europe-west1 were selected): pass -l <region>, "
     "so that a typo cannot take every region out of DNS."),
])
def test_drain_refuses_bad_input_with_one_sentence(tmp_path: Path, extra: tuple[str, ...],
                                                   message: str) -> None:
    run = run_playbook("playbooks/drain-region.yml", "-e", f"tai_build_root={tmp_path}",
                       *extra)
    assert run.returncode != 0
    assert message in " ".join(run.output.split())
    assert not (tmp_path / "europe-west1").exists()


def drain_region(url: str, build: Path, kubeconfig: Path, state: str,
                 *extra: str) -> PlaybookRun:
    """playbooks/drain-region.yml for europe-west1 in apply mode against the doubles."""
    endpoints = json.dumps({"dns_api_endpoints": {"compute.googleapis.com": url}})
    return run_playbook("playbooks/drain-region.yml", "-l", "europe-west1", "-e", "tai_apply=true",
                        "-e", endpoints, "-e", f"tai_build_root={build}",
                        "-e", f"dns_api_endpoint={url}", "-e", "dns_auth_kind=none",
                        "-e", "dns_change_poll_interval=0", "-e", f"dns_region_state={state}",
                        *extra, env={"KUBECONFIG": str(kubeconfig)})


def geo_double(double: GcpDouble, regions: tuple[str, ...]) -> None:
    """The zone, the geo record set with an item for each of regions, and europe-west1's
    load balancer address as Google allocated it (the inventory expects it)."""
    double.add_zone(PROJECT, ZONE, "tai.example.com.")
    double.put_rrset(PROJECT, ZONE, {"name": NAME, "type": "A", "ttl": 60, "routingPolicy": {
        "geo": {"items": [{"location": r, "rrdatas": [INVENTORY_ADDRESSES[r]]}
                          for r in regions]}}})
    double.apis.add_global_address(PROJECT, "tai-europe-west1-lb-address", "35.2.2.2")


def locations(double: GcpDouble) -> list[str]:
    rrset = double.rrset(PROJECT, ZONE, NAME)
    assert rrset is not None
    return [i["location"] for i in rrset["routingPolicy"]["geo"]["items"]]


@pytest.mark.playbook
def test_drain_and_restore_through_the_playbook(tmp_path: Path) -> None:
    cluster, kubeconfig = gateway_cluster(tmp_path, PROJECT, ("europe-west1",))
    try:
        with serve() as (double, url):
            geo_double(double, tuple(INVENTORY_ADDRESSES))
            drained = drain_region(url, tmp_path, kubeconfig, "drained")
            assert drained.returncode == 0, drained.output[-3000:]
            assert locations(double) == ["us-central1", "asia-southeast1"]
            assert "routes us-central1, asia-southeast1 (europe-west1 drained)" in " ".join(
                drained.output.split())
            assert load(tmp_path, "europe-west1", "dns", "geo-item.json")["state"] == "drained"

            restored = drain_region(url, tmp_path, kubeconfig, "active")
            assert restored.returncode == 0, restored.output[-3000:]
            assert locations(double) == ["us-central1", "asia-southeast1", "europe-west1"]
            again = drain_region(url, tmp_path, kubeconfig, "active")
            assert again.recap("europe-west1")["changed"] == 0
            assert len([r for r in double.requests if r[0] == "POST"]) == 2
            # drain and restore only read the load balancer address, never write it
            assert {m for m, p, _ in double.requests if "/compute/" in p} == {"GET"}
    finally:
        cluster.stop()


@pytest.mark.playbook
def test_a_restore_waits_for_the_gateway_certificate(tmp_path: Path) -> None:
    # The gateway's certificate is not issued (an ACME order that does not complete): a drain
    # goes ahead (taking a region out never waits), but the restore must not publish the region
    # again, as the role's apply would not.
    cluster, kubeconfig = gateway_cluster(tmp_path, PROJECT, ("europe-west1",), issued=False)
    try:
        with serve() as (double, url):
            geo_double(double, tuple(INVENTORY_ADDRESSES))
            drained = drain_region(url, tmp_path, kubeconfig, "drained")
            assert drained.returncode == 0, drained.output[-3000:]
            assert locations(double) == ["us-central1", "asia-southeast1"]
            posts = len([r for r in double.requests if r[0] == "POST"])

            refused = drain_region(url, tmp_path, kubeconfig, "active",
                                   "-e", "dns_tls_certificate_wait_seconds=2",
                                   "-e", "dns_tls_certificate_poll_interval=1")
            assert refused.returncode != 0
            text = " ".join(refused.output.split())
            # cert-manager's Ready condition, as the double's controller reports an order that
            # does not complete (cert-manager.io/v1 CertificateStatus), then what to check
            assert ("The gateway's TLS certificate (Certificate istio-system/tai-tls-cert) is "
                    "not Ready after 2 seconds (dns_tls_certificate_wait_seconds): Ready is False "
                    "(DoesNotExist: Issuing certificate as Secret does not exist)") in text
            assert "europe-west1 was not added to the geo-routed name" in text
            assert "Traceback" not in refused.output
            assert locations(double) == ["us-central1", "asia-southeast1"]
            assert len([r for r in double.requests if r[0] == "POST"]) == posts

            cluster.certificates_issued = True  # the order completes
            restored = drain_region(url, tmp_path, kubeconfig, "active")
            assert restored.returncode == 0, restored.output[-3000:]
            assert locations(double) == ["us-central1", "asia-southeast1", "europe-west1"]
    finally:
        cluster.stop()
