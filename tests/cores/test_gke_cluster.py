"""gke_cluster core against the loopback TEST DOUBLE of the GKE REST API (tests/helpers).

The desired cluster is the one the plan renders for europe-west1 (build/<region>/gke/
cluster.json), so the module is exercised with exactly what apply mode sends.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.gcp_double import GcpDouble, serve
from helpers.gcp_plan import load, render
from tai_deploy.gcp_rest import GcpApiError, GcpConfigError, RestClient, RetryPolicy, make_session
from tai_deploy.gke import ClusterRef, Converger, GkeError, covers

PROJECT, REGION, NAME = "tai-production", "europe-west1", "tai-cluster"
BASE = f"/v1/projects/{PROJECT}/locations/{REGION}"


@pytest.fixture(scope="module")
def desired(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("build")
    render(root, "playbooks/clusters.yml", limit=REGION)
    body: dict[str, Any] = load(root, REGION, "gke", "cluster.json")["cluster"]
    return body


@pytest.fixture
def api() -> Iterator[tuple[GcpDouble, str]]:
    with serve() as (double, url):
        yield double, url


def converger(url: str, *, attempts: int = 3, wait_timeout: float = 30.0,
              auth_kind: str = "none") -> Converger:
    client = RestClient(make_session(auth_kind, url), url, service="the GKE API",
                        retry=RetryPolicy(attempts=attempts, base_delay=0.0))
    return Converger(client, ClusterRef(PROJECT, REGION, NAME), wait_timeout=wait_timeout,
                     poll_interval=0.0)


def test_create_sends_the_rendered_body_and_waits_for_the_operation(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    result = converger(url).converge(desired, check_mode=False)
    assert result.changed
    assert [a.kind for a in result.actions] == ["create_cluster"]
    method, path, body = next(r for r in double.requests if r[0] == "POST")
    assert (method, path) == ("POST", f"{BASE}/clusters")
    assert body == {"cluster": desired}
    assert f"GET {BASE}/operations/{result.operations[0]}" in double.calls("GET")
    facts = result.cluster_facts()
    assert facts["status"] == "RUNNING"
    assert facts["endpoint"] == "203.0.113.10"
    assert facts["cluster_ca_certificate"]
    assert facts["node_pools"] == ["general-pool", "memory-pool", "spot-pool"]


def test_rerun_on_the_created_cluster_changes_nothing(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    converger(url).converge(desired, check_mode=False)
    before = len(double.mutating_calls())
    again = converger(url).converge(desired, check_mode=False)
    assert not again.changed
    assert again.actions == [] and again.warnings == []
    assert len(double.mutating_calls()) == before


def test_update_calls_the_specific_methods_one_operation_at_a_time(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    converger(url).converge(desired, check_mode=False)
    changed = copy.deepcopy(desired)
    changed["releaseChannel"] = {"channel": "STABLE"}
    changed["resourceLabels"]["team"] = "sre"
    pools = {p["name"]: p for p in changed["nodePools"]}
    pools["spot-pool"]["autoscaling"]["totalMaxNodeCount"] = 30
    pools["memory-pool"]["config"]["labels"]["tier"] = "memory"
    pools["general-pool"]["config"]["taints"] = [
        {"key": "dedicated", "value": "general", "effect": "PREFER_NO_SCHEDULE"}]
    batch = copy.deepcopy(pools["general-pool"])
    batch["name"] = "batch-pool"
    changed["nodePools"].append(batch)

    result = converger(url).converge(changed, check_mode=False)
    kinds = [(a.kind, a.target, a.fields) for a in result.actions]
    assert kinds == [
        ("update_cluster", NAME, ["releaseChannel"]),
        ("set_resource_labels", NAME, ["resourceLabels"]),
        ("update_node_pool", "general-pool", ["config.taints"]),
        ("update_node_pool", "memory-pool", ["config.labels"]),
        ("set_node_pool_autoscaling", "spot-pool", ["autoscaling"]),
        ("create_node_pool", "batch-pool", ["*"]),
    ]
    sent = {p: b for m, p, b in double.requests if m != "GET"}
    assert sent[f"{BASE}/clusters/{NAME}"] == {
        "update": {"desiredReleaseChannel": {"channel": "STABLE"}}}
    pool_put = sent[f"{BASE}/clusters/{NAME}/nodePools/memory-pool"]
    assert pool_put["labels"] == {"labels": pools["memory-pool"]["config"]["labels"]}
    # nodePools.update must carry the live version and image: nothing gets upgraded.
    assert pool_put["nodeVersion"] == "1.34.1-gke.1000"
    assert pool_put["imageType"] == "COS_CONTAINERD"
    assert sent[f"{BASE}/clusters/{NAME}/nodePools/spot-pool:setAutoscaling"] == {
        "autoscaling": pools["spot-pool"]["autoscaling"]}
    assert len(result.operations) == 6
    # Converged: a rerun makes no call.
    assert not converger(url).converge(changed, check_mode=False).changed


def test_check_mode_lists_the_calls_and_makes_none(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    planned = converger(url).converge(desired, check_mode=True)
    assert planned.changed and [a.kind for a in planned.actions] == ["create_cluster"]
    converger(url).converge(desired, check_mode=False)
    changed = copy.deepcopy(desired)
    changed["addonsConfig"]["httpLoadBalancing"] = {"disabled": True}
    count = len(double.mutating_calls())
    planned = converger(url).converge(changed, check_mode=True)
    assert [a.kind for a in planned.actions] == ["set_addons"]
    assert planned.before.get("addonsConfig") != planned.after["addonsConfig"]
    assert planned.before["databaseEncryption"] == planned.after["databaseEncryption"]
    assert len(double.mutating_calls()) == count


def test_spot_cannot_change_in_place(api: tuple[GcpDouble, str],
                                     desired: dict[str, Any]) -> None:
    _, url = api
    converger(url).converge(desired, check_mode=False)
    changed = copy.deepcopy(desired)
    next(p for p in changed["nodePools"] if p["name"] == "general-pool")["config"]["spot"] = True
    with pytest.raises(GkeError) as err:
        converger(url).converge(changed, check_mode=False)
    msg = str(err.value)
    assert msg.startswith("GKE cannot change in place: config.spot of node pool general-pool")
    assert "live unset, desired true" in msg
    assert msg.count(".") >= 1 and "\n" not in msg


@pytest.mark.parametrize(("status", "api_status", "hint"), [
    (403, "PERMISSION_DENIED",
     "the credentials lack an IAM permission or the API is not enabled in the project"),
    (409, "ALREADY_EXISTS", "it already exists or another operation on it is in progress"),
])
def test_client_errors_fail_at_once_with_one_sentence(
        api: tuple[GcpDouble, str], desired: dict[str, Any], status: int, api_status: str,
        hint: str) -> None:
    double, url = api
    double.fail("POST", r"/clusters$", status, "Caller does not have the permission.")
    with pytest.raises(GcpApiError) as err:
        converger(url).converge(desired, check_mode=False)
    assert err.value.sentence() == (
        f"Cannot create cluster {NAME} in {REGION} (project {PROJECT}): the GKE API answered "
        f"HTTP {status} {api_status} ({hint}): Caller does not have the permission.")
    assert len(double.calls("POST")) == 1  # not retried


def test_rate_limit_is_retried_then_succeeds(api: tuple[GcpDouble, str],
                                             desired: dict[str, Any]) -> None:
    double, url = api
    double.fail("POST", r"/clusters$", 429, "Quota exceeded for quota metric 'Write requests'.",
                times=2)
    result = converger(url).converge(desired, check_mode=False)
    assert result.changed and result.cluster_facts()["status"] == "RUNNING"
    assert len(double.calls("POST")) == 3


def test_server_errors_are_retried_a_bounded_number_of_times(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    double.fail("GET", rf"/clusters/{NAME}$", 503, "The service is currently unavailable.",
                times=10)
    with pytest.raises(GcpApiError) as err:
        converger(url, attempts=3).converge(desired, check_mode=False)
    assert str(err.value) == (
        f"Cannot read cluster {NAME} in {REGION} (project {PROJECT}): the GKE API answered "
        "HTTP 503 UNAVAILABLE after 3 attempts (the service failed): The service is currently "
        "unavailable.")
    assert len(double.calls("GET")) == 3


def test_a_failed_operation_names_the_operation_and_the_cause(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    double.next_op_error = "Insufficient regional quota to satisfy request: resource \"CPUS\"."
    with pytest.raises(GkeError) as err:
        converger(url).converge(desired, check_mode=False)
    assert str(err.value) == (
        f"GKE operation operation-1 to create cluster {NAME} in {REGION} (project {PROJECT}) "
        "failed: Insufficient regional quota to satisfy request: resource \"CPUS\".")


def test_an_operation_past_the_deadline_stops_the_wait(desired: dict[str, Any]) -> None:
    with serve(GcpDouble(op_polls=10**9)) as (_, url), pytest.raises(GkeError) as err:
        converger(url, wait_timeout=0.05).converge(desired, check_mode=False)
    assert "did not finish within 0.05 s; it goes on in GCP" in str(err.value)


def test_a_busy_cluster_is_waited_for_before_an_update(desired: dict[str, Any]) -> None:
    with serve(GcpDouble(op_polls=3)) as (double, url):
        conv = converger(url)
        conv.client.call("POST", f"{BASE}/clusters", {"cluster": desired}, action="create")
        assert (conv.read() or {}).get("status") == "PROVISIONING"
        changed = copy.deepcopy(desired)
        components = ["SYSTEM_COMPONENTS", "APISERVER"]
        changed["monitoringConfig"] = {"componentConfig": {"enableComponents": components}}
        result = conv.converge(changed, check_mode=False)
        assert [a.fields for a in result.actions] == [["monitoringConfig"]]
        assert result.cluster_facts()["status"] == "RUNNING"
        live = double.clusters[f"{PROJECT}/{REGION}/{NAME}"]
        assert live["monitoringConfig"]["componentConfig"]["enableComponents"] == components


def test_anonymous_credentials_are_refused_for_google() -> None:
    with pytest.raises(GcpConfigError) as err:
        make_session("none", "https://container.googleapis.com")
    assert str(err.value) == ("auth_kind none (anonymous) is allowed only with a loopback "
                              "api_endpoint such as a test double, not "
                              "https://container.googleapis.com.")


def test_comparison_follows_proto3_json() -> None:
    assert covers({"httpLoadBalancing": {"disabled": False}}, {"httpLoadBalancing": {}})
    assert covers({"spot": False, "diskSizeGb": 100}, {"diskSizeGb": 100})
    assert covers({"maxPodsPerNode": 110}, {"maxPodsPerNode": "110"})
    assert covers({"oauthScopes": ["a", "b"]}, {"oauthScopes": ["b", "a"]})
    assert not covers({"labels": {"a": "1"}}, {"labels": {"a": "1", "b": "2"}})
    assert not covers({"taints": []}, {"taints": [{"key": "spot"}]})


def test_module_input_name_must_match(api: tuple[GcpDouble, str],
                                      desired: dict[str, Any]) -> None:
    _, url = api
    other = dict(desired, name="other")
    with pytest.raises(GkeError, match="must match"):
        converger(url).converge(other, check_mode=True)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda c: c.__setitem__("network", f"projects/{PROJECT}/global/networks/other-vpc"),
     "network (live \"projects/tai-production/global/networks/tai-vpc\", desired "
     "\"projects/tai-production/global/networks/other-vpc\")"),
    (lambda c: c["networkConfig"].__setitem__("datapathProvider", "LEGACY_DATAPATH"),
     "networkConfig.datapathProvider (live \"ADVANCED_DATAPATH\", desired "
     "\"LEGACY_DATAPATH\")"),
    (lambda c: c["ipAllocationPolicy"].__setitem__("clusterSecondaryRangeName", "pods-2"),
     "ipAllocationPolicy (live {"),
])
def test_a_field_only_creation_sets_is_refused_in_one_sentence(
        api: tuple[GcpDouble, str], desired: dict[str, Any], mutate: Any, expected: str) -> None:
    double, url = api
    converger(url).converge(desired, check_mode=False)
    count = len(double.mutating_calls())
    changed = copy.deepcopy(desired)
    mutate(changed)
    with pytest.raises(GkeError) as err:
        converger(url).converge(changed, check_mode=True)
    msg = str(err.value)
    assert msg.startswith(f"GKE sets {expected}"), msg
    assert msg.endswith(f" of cluster {NAME} in {REGION} (project {PROJECT}) only when the "
                        "cluster is created: drain the region (playbooks/drain-region.yml), "
                        "delete the cluster and rerun the play to create it anew, or revert "
                        "the setting."), msg
    assert "\n" not in msg and msg.count(". ") == 0
    assert len(double.mutating_calls()) == count


def test_the_live_short_network_name_matches_the_full_path(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    converger(url).converge(desired, check_mode=False)
    live = double.clusters[f"{PROJECT}/{REGION}/{NAME}"]
    # The real API answers the network and subnetwork by their short names.
    live["network"], live["subnetwork"] = "tai-vpc", f"tai-{REGION}"
    assert not converger(url).converge(desired, check_mode=True).changed


def test_operations_report_their_progress_while_they_run(desired: dict[str, Any]) -> None:
    lines: list[str] = []
    now = [0.0]

    def sleep(_: float) -> None:  # each poll interval is 65 s of the test's clock
        now[0] += 65

    with serve(GcpDouble(op_polls=3)) as (_, url):
        conv = converger(url, wait_timeout=3600)
        conv.clock, conv.sleep, conv.progress = (lambda: now[0]), sleep, lines.append
        conv.converge(desired, check_mode=False)
    prefix = (f"GKE operation operation-1 (CREATE_CLUSTER) to create cluster {NAME} in {REGION} "
              f"(project {PROJECT}): RUNNING, ")
    assert lines == [prefix + "0m00s elapsed", prefix + "1m05s elapsed",
                     prefix + "2m10s elapsed"]


def test_a_disabled_api_is_one_sentence_that_says_what_to_do(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    # Google's message for a disabled service (HTTP 403, reason SERVICE_DISABLED).
    double.fail("GET", rf"/clusters/{NAME}$", 403,
                f"Kubernetes Engine API has not been used in project {PROJECT} before or it is "
                "disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
                f"container.googleapis.com/overview?project={PROJECT} then retry.")
    with pytest.raises(GkeError) as err:
        converger(url).converge(desired, check_mode=True)
    assert str(err.value) == (
        f"The API container.googleapis.com is not enabled in project {PROJECT}: run the project "
        f"phase (`ansible-playbook playbooks/project.yml -l {REGION} -e tai_apply=true`) or "
        "enable container.googleapis.com in the project.")


def test_a_disabled_container_api_in_a_new_project_is_one_sentence(
        desired: dict[str, Any]) -> None:
    # The double answers like Google for a service not enabled yet (403, SERVICE_DISABLED).
    with serve(GcpDouble.empty_project()) as (double, url), pytest.raises(GkeError) as err:
        converger(url).converge(desired, check_mode=False)
    assert str(err.value) == (
        f"The API container.googleapis.com is not enabled in project {PROJECT}: run the project "
        f"phase (`ansible-playbook playbooks/project.yml -l {REGION} -e tai_apply=true`) or "
        "enable container.googleapis.com in the project.")
    assert double.mutating_calls() == []


def _hardened_changes(desired: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(desired)
    changed["binaryAuthorization"] = {"evaluationMode": "DISABLED"}
    changed["databaseEncryption"]["keyName"] = changed["databaseEncryption"]["keyName"].replace(
        "gke-secrets", "gke-secrets-2")
    changed["maintenancePolicy"]["window"]["recurringWindow"]["recurrence"] = "FREQ=DAILY"
    changed["legacyAbac"] = {"enabled": True}
    changed["shieldedNodes"] = {"enabled": False}
    changed["networkConfig"]["enableIntraNodeVisibility"] = False
    changed["networkConfig"]["defaultEnablePrivateNodes"] = False
    endpoints = changed["controlPlaneEndpointsConfig"]
    endpoints["ipEndpointsConfig"]["authorizedNetworksConfig"]["cidrBlocks"] = [
        {"displayName": "office", "cidrBlock": "203.0.113.0/24"}]
    return changed


def test_hardened_fields_update_in_place_one_call_each_with_bodies_google_accepts(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    from tai_deploy import gcp_schema

    double, url = api
    converger(url).converge(desired, check_mode=False)
    double.clusters[f"{PROJECT}/{REGION}/{NAME}"]["maintenancePolicy"]["resourceVersion"] = "7a"
    planned = converger(url).converge(_hardened_changes(desired), check_mode=True)
    calls = [(a.kind, a.method, a.path.rsplit("/", 1)[-1], a.fields) for a in planned.actions]
    assert calls == [
        ("set_legacy_abac", "POST", f"{NAME}:setLegacyAbac", ["legacyAbac"]),
        ("update_cluster", "PUT", NAME, ["shieldedNodes"]),
        ("update_cluster", "PUT", NAME, ["binaryAuthorization"]),
        ("update_cluster", "PUT", NAME, ["databaseEncryption"]),
        ("update_cluster", "PUT", NAME, ["controlPlaneEndpointsConfig"]),
        ("update_cluster", "PUT", NAME, ["networkConfig.defaultEnablePrivateNodes"]),
        ("update_cluster", "PUT", NAME, ["networkConfig.enableIntraNodeVisibility"]),
        ("set_maintenance_policy", "POST", f"{NAME}:setMaintenancePolicy",
         ["maintenancePolicy"]),
    ]
    methods = {"set_legacy_abac": "setLegacyAbac", "update_cluster": "update",
               "set_maintenance_policy": "setMaintenancePolicy"}
    for action in planned.actions:
        if action.kind == "update_cluster":
            assert len(action.body["update"]) == 1  # one desiredXxx per call
        assert gcp_schema.method_problems(
            "container.v1", f"projects.locations.clusters.{methods[action.kind]}",
            action.body) == [], action.as_dict()
    bodies = {a.fields[0]: a.body for a in planned.actions}
    assert bodies["networkConfig.defaultEnablePrivateNodes"] == {
        "update": {"desiredDefaultEnablePrivateNodes": False}}
    assert bodies["networkConfig.enableIntraNodeVisibility"] == {
        "update": {"desiredIntraNodeVisibilityConfig": {"enabled": False}}}
    assert bodies["legacyAbac"] == {"enabled": True}
    # The policy's resourceVersion guards against overwriting a concurrent change.
    assert bodies["maintenancePolicy"]["maintenancePolicy"]["resourceVersion"] == "7a"


def test_private_nodes_of_a_vpc_peering_cluster_need_recreation(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    converger(url).converge(desired, check_mode=False)
    live = double.clusters[f"{PROJECT}/{REGION}/{NAME}"]
    # An older private cluster: private nodes through privateClusterConfig and VPC peering.
    live["networkConfig"].pop("defaultEnablePrivateNodes")
    live["privateClusterConfig"] = {"enablePrivateNodes": False,
                                    "peeringName": "gke-n0123-peer"}
    with pytest.raises(GkeError) as err:
        converger(url).converge(desired, check_mode=True)
    assert str(err.value).startswith(
        "GKE sets private nodes of a VPC-peering private cluster (live false, desired true) of "
        f"cluster {NAME} in {REGION} (project {PROJECT}) only when the cluster is created: ")


def test_a_calico_cluster_without_a_datapath_field_is_legacy(
        api: tuple[GcpDouble, str], desired: dict[str, Any]) -> None:
    double, url = api
    calico = copy.deepcopy(desired)
    calico["networkConfig"]["datapathProvider"] = "LEGACY_DATAPATH"
    calico["addonsConfig"]["networkPolicyConfig"] = {"disabled": False}
    calico["networkPolicy"] = {"enabled": True, "provider": "CALICO"}
    converger(url).converge(calico, check_mode=False)
    # Clusters made before datapathProvider existed do not return it: that is the legacy one.
    double.clusters[f"{PROJECT}/{REGION}/{NAME}"]["networkConfig"].pop("datapathProvider")
    assert not converger(url).converge(calico, check_mode=True).changed
    with pytest.raises(GkeError, match=r"^GKE sets networkConfig.datapathProvider \(live "
                                       r'"LEGACY_DATAPATH", desired "ADVANCED_DATAPATH"\)'):
        converger(url).converge(desired, check_mode=True)
