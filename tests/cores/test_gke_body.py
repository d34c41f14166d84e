"""The hardened Cluster body (module_utils/tai_deploy/gke_body.py) and its input checks.

Bodies are checked with the plan-time schema core (gcp_schema, Google's container v1 discovery
document) and sent to the loopback TEST DOUBLE of the GKE API (tests/helpers/gcp_double), which
validates them the same way and enforces the documented cross-field rules.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.gcp_double import serve
from tai_deploy import gcp_schema, gke_body, gke_checks
from tai_deploy.gcp_rest import GcpApiError, RestClient, RetryPolicy, make_session

PROJECT, REGION = "tai-production", "europe-west1"
CREATE = "projects.locations.clusters.create"
POOL_CREATE = "projects.locations.clusters.nodePools.create"
BASE = f"/v1/projects/{PROJECT}/locations/{REGION}"


def values(**overrides: Any) -> dict[str, Any]:
    """The role's inputs for europe-west1 with the role defaults."""
    out: dict[str, Any] = {
        "project": PROJECT, "region": REGION, "environment": "production",
        "cluster_name": "tai-cluster",
        "zones": ["europe-west1-b", "europe-west1-c", "europe-west1-d"],
        "release_channel": "REGULAR", "kubernetes_version": "1.34", "workload_identity": True,
        "logging_components": ["SYSTEM_COMPONENTS"],
        "monitoring_components": ["SYSTEM_COMPONENTS"],
        "node_service_account": "tai-gke-nodes",
        "oauth_scopes": ["https://www.googleapis.com/auth/logging.write"],
        "max_pods_per_node": 110,
        "node_pools": {
            "general": {"machine_type": "n1-standard-4", "disk_size_gb": 100,
                        "initial_nodes": 3, "min_nodes": 3, "max_nodes": 10, "spot": False,
                        "labels": {"workload-type": "general"}, "taints": []},
            "spot": {"machine_type": "n1-standard-4", "disk_size_gb": 100, "initial_nodes": 2,
                     "min_nodes": 2, "max_nodes": 20, "spot": True, "labels": {"spot": "true"},
                     "taints": [{"key": "spot", "value": "true", "effect": "NO_SCHEDULE"}]}},
        "network": "tai-vpc", "subnetwork": f"tai-{REGION}", "pods_range": "pods",
        "services_range": "services", "private_nodes": True, "control_plane_access": "dns",
        "authorized_networks": [], "datapath_provider": "ADVANCED_DATAPATH",
        "intranode_visibility": True, "binary_authorization": True, "kms_key_ring": "tai",
        "kms_key": "gke-secrets", "maintenance_start": "03:00", "maintenance_hours": 4,
        "maintenance_recurrence": "FREQ=WEEKLY;BYDAY=TU,WE,TH",
    }
    out.update(overrides)
    return out


def todays_body() -> dict[str, Any]:
    """The body the role rendered before hardening (roles/gke/templates/cluster.yaml.j2)."""
    return {
        "name": "tai-cluster", "description": "TAI cluster (production, europe-west1)",
        "locations": ["europe-west1-b", "europe-west1-c", "europe-west1-d"],
        "releaseChannel": {"channel": "REGULAR"}, "initialClusterVersion": "1.34",
        "addonsConfig": {"httpLoadBalancing": {"disabled": False},
                         "horizontalPodAutoscaling": {"disabled": False},
                         "networkPolicyConfig": {"disabled": False}},
        "networkPolicy": {"enabled": True, "provider": "CALICO"},
        "loggingService": "logging.googleapis.com/kubernetes",
        "monitoringService": "monitoring.googleapis.com/kubernetes",
        "loggingConfig": {"componentConfig": {"enableComponents": ["SYSTEM_COMPONENTS"]}},
        "monitoringConfig": {"componentConfig": {"enableComponents": ["SYSTEM_COMPONENTS"]}},
        "workloadIdentityConfig": {"workloadPool": "tai-production.svc.id.goog"},
        "ipAllocationPolicy": {"useIpAliases": True},
        "defaultMaxPodsConstraint": {"maxPodsPerNode": "110"},
        "resourceLabels": {"app": "tai", "environment": "production", "region": REGION},
        "nodePools": [{"name": "general-pool", "initialNodeCount": 1,
                       "config": {"machineType": "n1-standard-4", "diskSizeGb": 100}}],
    }


@pytest.fixture
def client() -> Iterator[RestClient]:
    with serve() as (_, url):
        yield RestClient(make_session("none", url), url, service="the GKE API",
                         retry=RetryPolicy(attempts=1, base_delay=0.0))


def test_the_hardened_body_is_schema_valid_and_todays_too() -> None:
    body = gke_body.cluster_body(values())
    assert gcp_schema.method_problems("container.v1", CREATE, {"cluster": body}) == []
    for pool in body["nodePools"]:
        assert gcp_schema.method_problems("container.v1", POOL_CREATE, {"nodePool": pool}) == []
    # Today's body passes the schema: what the API refuses is a cross-field rule.
    assert gcp_schema.method_problems("container.v1", CREATE, {"cluster": todays_body()}) == []


def test_the_double_refuses_todays_body_and_accepts_the_hardened_one(client: RestClient) -> None:
    with pytest.raises(GcpApiError) as err:
        client.call("POST", f"{BASE}/clusters", {"cluster": todays_body()}, action="create")
    assert err.value.status == 400
    assert err.value.message == ("Cannot specify logging_config or monitoring_config together "
                                 "with logging_service or monitoring_service")
    op = client.call("POST", f"{BASE}/clusters", {"cluster": gke_body.cluster_body(values())},
                     action="create")
    assert op["operationType"] == "CREATE_CLUSTER"


def test_calico_is_the_add_on_and_never_next_to_dataplane_v2(client: RestClient) -> None:
    calico = gke_body.cluster_body(values(datapath_provider="LEGACY_DATAPATH"))
    assert calico["networkPolicy"] == {"enabled": True, "provider": "CALICO"}
    assert calico["addonsConfig"]["networkPolicyConfig"] == {"disabled": False}
    v2 = gke_body.cluster_body(values())
    assert "networkPolicy" not in v2 and "networkPolicyConfig" not in v2["addonsConfig"]
    mixed = copy.deepcopy(v2)
    mixed["networkPolicy"] = calico["networkPolicy"]
    with pytest.raises(GcpApiError) as err:
        client.call("POST", f"{BASE}/clusters", {"cluster": mixed}, action="create")
    assert "ADVANCED_DATAPATH is not allowed" in err.value.message
    client.call("POST", f"{BASE}/clusters", {"cluster": calico}, action="create")


def test_authorized_networks_open_the_public_ip_endpoint_only_to_them() -> None:
    nets = [{"cidr": "203.0.113.0/24", "name": "office"}, {"cidr": "198.51.100.7/32"}]
    body = gke_body.cluster_body(values(control_plane_access="authorized_networks",
                                        authorized_networks=nets))
    assert body["controlPlaneEndpointsConfig"] == {
        "dnsEndpointConfig": {"allowExternalTraffic": False},
        "ipEndpointsConfig": {"enabled": True, "enablePublicEndpoint": True,
                              "authorizedNetworksConfig": {
                                  "enabled": True, "gcpPublicCidrsAccessEnabled": False,
                                  "cidrBlocks": [
                                      {"displayName": "office", "cidrBlock": "203.0.113.0/24"},
                                      {"displayName": "198.51.100.7/32",
                                       "cidrBlock": "198.51.100.7/32"}]}}}


def test_binary_authorization_off_switch_and_node_account_email() -> None:
    body = gke_body.cluster_body(values(binary_authorization=False,
                                        node_service_account="nodes-x@other.iam.gserviceaccount"
                                                             ".com"))
    assert body["binaryAuthorization"] == {"evaluationMode": "DISABLED"}
    assert {p["config"]["serviceAccount"] for p in body["nodePools"]} == {
        "nodes-x@other.iam.gserviceaccount.com"}


PAYLOAD = 'x\nlegacyAbac: {enabled: true}\n"}, {"a": 1}: {z'


def _paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        out = {prefix}
        for k, v in value.items():
            out |= _paths(v, f"{prefix}.{k}")
        return out
    if isinstance(value, list):
        out = {prefix}
        for i, v in enumerate(value):
            out |= _paths(v, f"{prefix}[{i}]")
        return out
    return {prefix}


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _injections() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every string input of the body, one at a time, set to the payload."""
    base = values(authorized_networks=[{"cidr": "203.0.113.0/24", "name": "office"}])
    # Choices and times are compared or parsed, never copied into the body (test below).
    for key, value in base.items():
        if key in ("control_plane_access", "maintenance_start"):
            continue
        if isinstance(value, str):
            yield key, {**base, key: PAYLOAD}
        elif isinstance(value, list) and value and isinstance(value[0], str):
            yield f"{key}[0]", {**base, key: [PAYLOAD, *value[1:]]}
    for field in ("cidr", "name"):
        nets = [{"cidr": "203.0.113.0/24", "name": "office", field: PAYLOAD}]
        yield f"authorized_networks[0].{field}", {**base, "authorized_networks": nets}
    for field in ("machine_type",):
        pools = copy.deepcopy(base["node_pools"])
        pools["general"][field] = PAYLOAD
        yield f"node_pools.general.{field}", {**base, "node_pools": pools}
    pools = copy.deepcopy(base["node_pools"])
    pools["general"]["labels"]["workload-type"] = PAYLOAD
    yield "node_pools.general.labels value", {**base, "node_pools": pools}
    for field in ("key", "value", "effect"):
        pools = copy.deepcopy(base["node_pools"])
        pools["spot"]["taints"][0][field] = PAYLOAD
        yield f"node_pools.spot.taints[0].{field}", {**base, "node_pools": pools}


@pytest.mark.parametrize(("where", "given"), list(_injections()),
                         ids=[w for w, _ in _injections()])
def test_a_payload_in_any_string_input_stays_a_string_value(where: str,
                                                            given: dict[str, Any]) -> None:
    baseline = gke_body.cluster_body(values(
        authorized_networks=[{"cidr": "203.0.113.0/24", "name": "office"}]))
    body = gke_body.cluster_body(given)
    assert _paths(body) == _paths(baseline), where  # no field added, none removed
    assert body["legacyAbac"] == {"enabled": False}
    assert any(PAYLOAD in s for s in _strings(body)), f"{where} did not reach the body"
    assert json.loads(json.dumps(body)) == body  # what tai_bundle writes reads back the same


def test_parsed_inputs_refuse_a_payload_in_one_sentence() -> None:
    with pytest.raises(gke_body.BodyError) as err:
        gke_body.cluster_body(values(maintenance_start=PAYLOAD))
    assert str(err.value) == (f"gke_maintenance_start is {PAYLOAD!r}; give a UTC time of day "
                              "as HH:MM.")
    # Anything but "dns" is the IP endpoint with authorized networks: nothing is copied.
    body = gke_body.cluster_body(values(control_plane_access=PAYLOAD))
    assert PAYLOAD not in json.dumps(body)


# --- input checks ---------------------------------------------------------------------------


def test_the_role_defaults_have_no_problem() -> None:
    assert gke_checks.problems(REGION, values()) == []


@pytest.mark.parametrize(("override", "sentence"), [
    ({"authorized_networks": [{"cidr": "10.0.0.1/8", "name": "lan"}]},
     "gke_authorized_networks of region europe-west1 is '10.0.0.1/8'; each cidr must be an "
     "IPv4 network such as 203.0.113.0/24 with no host bits set."),
    ({"authorized_networks": [{"cidr": "0.0.0.0/0"}]},
     "gke_authorized_networks of region europe-west1 is '0.0.0.0/0'; 0.0.0.0/0 opens the "
     "control plane to the whole internet; list the networks of the operators and AWX instead."),
    ({"authorized_networks": [{"cidr": "2001:db8::/32"}]},
     "gke_authorized_networks of region europe-west1 is '2001:db8::/32'; GKE authorized "
     "networks are IPv4 CIDRs."),
    ({"authorized_networks": ["203.0.113.0/24"]},
     "gke_authorized_networks of region europe-west1 is '203.0.113.0/24'; each item needs cidr "
     "(and a name), such as {cidr: 203.0.113.0/24, name: office}."),
    ({"control_plane_access": "authorized_networks"},
     "gke_authorized_networks of region europe-west1 is []; with gke_control_plane_access "
     "authorized_networks a production cluster needs at least one network (the operators' and "
     "AWX's egress CIDRs), or use the DNS endpoint (gke_control_plane_access: dns)."),
    ({"maintenance_start": "3am"},
     "gke_maintenance_start of region europe-west1 is '3am'; give a UTC time of day as HH:MM, "
     "such as 03:00."),
    ({"maintenance_hours": 2},
     "gke_maintenance_hours of region europe-west1 is 2; GKE needs windows of 4 to 24 whole "
     "hours."),
    ({"maintenance_recurrence": "FREQ=HOURLY"},
     "gke_maintenance_recurrence of region europe-west1 is 'FREQ=HOURLY'; give FREQ=DAILY or "
     "FREQ=WEEKLY;BYDAY=<days> with days among MO,TU,WE,TH,FR,SA,SU."),
    # Two 4-hour weekend windows hold 32 h in some 32 days (8 occurrences): GKE wants 48 h.
    ({"maintenance_recurrence": "FREQ=WEEKLY;BYDAY=SA,SU"},
     "gke_maintenance_recurrence of region europe-west1 is 'FREQ=WEEKLY;BYDAY=SA,SU for 4 h'; "
     "that leaves 32 h in some 32 days and GKE needs 48 h: add days or hours."),
    ({"kms_key": "gke secrets"},
     "gke_kms_key of region europe-west1 is 'gke secrets'; a Cloud KMS name is 1-63 letters, "
     "digits, underscores and hyphens."),
    ({"network": "TAI_VPC"},
     "tai_network_name of region europe-west1 is 'TAI_VPC'; a Compute Engine name is 1-63 "
     "lowercase letters, digits and hyphens, starting with a letter."),
    ({"node_service_account": "nodes"},
     "gke_node_service_account of region europe-west1 is 'nodes'; give a service account id of "
     "6-30 lowercase letters, digits and hyphens (tai-gke-nodes) or its e-mail "
     "(<id>@<project>.iam.gserviceaccount.com)."),
])
def test_each_bad_input_is_one_sentence(override: dict[str, Any], sentence: str) -> None:
    assert gke_checks.problems(REGION, values(**override)) == [sentence]


def test_authorized_networks_may_be_empty_outside_production_or_with_dns() -> None:
    assert gke_checks.problems(REGION, values(control_plane_access="authorized_networks",
                                              environment="staging")) == []
    assert gke_checks.problems(REGION, values(control_plane_access="dns")) == []


def test_maintenance_availability_counts_the_worst_32_days() -> None:
    assert gke_checks.minimum_hours_in_32_days("FREQ=DAILY", 4) == 128
    # 32 days hold 4 or 5 of each weekday; from a Friday on, TU, WE and TH come 4 times each.
    assert gke_checks.minimum_hours_in_32_days("FREQ=WEEKLY;BYDAY=TU,WE,TH", 4) == 48
    assert gke_checks.minimum_hours_in_32_days("FREQ=WEEKLY;BYDAY=SA,SU", 6) == 48


def test_the_plan_files_declare_their_method_and_a_bad_field_stops_the_bundle() -> None:
    from tai_deploy.bundle import BundleError, collect

    files = gke_body.node_pool_files(gke_body.cluster_body(values()))
    assert [(f["path"], f["gcp_schema"]["method"]) for f in files] == [
        ("cluster.json", CREATE), ("node-pools/general-pool.json", POOL_CREATE),
        ("node-pools/spot-pool.json", POOL_CREATE)]
    written, _ = collect(files)
    assert json.loads(written["cluster.json"]) == files[0]["data"]
    bad = copy.deepcopy(files)
    bad[0]["data"]["cluster"]["networkConfig"]["datapathProvider"] = "DATAPLANE_V2"
    with pytest.raises(BundleError) as err:
        collect(bad)
    assert str(err.value).startswith("cluster.json would be refused by the Google API (1 "
                                     "problem(s)); nothing was written: "
                                     "cluster.networkConfig.datapathProvider has the value "
                                     '"DATAPLANE_V2", which is not one of')
