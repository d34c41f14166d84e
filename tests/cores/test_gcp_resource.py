"""The REST converger (tai_deploy.gcp_resource) and the refusals of the GCP TEST DOUBLE.

Every refusal the double makes follows Google's documented answer (see helpers/gcp_double);
each is reproduced with the body we used to send (refused) and the one we send now (accepted).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dns_resources import dns_bodies, dns_lb_items
from helpers.ansible_run import BIN, REPO, ansible_env
from helpers.gcp_double import GcpDouble, serve
from helpers.project_inputs import PROJECT, global_cfg, region_cfg
from project_resources import project_global_items, project_region_items
from tai_deploy.gcp_resource import ConvergeError, Converger
from tai_deploy.gcp_rest import GcpApiError, RestClient, RetryPolicy, make_session

C = f"/compute/v1/projects/{PROJECT}"


@pytest.fixture
def empty() -> Iterator[tuple[GcpDouble, str]]:
    with serve(GcpDouble.empty_project()) as (double, url):
        yield double, url


@pytest.fixture
def running() -> Iterator[tuple[GcpDouble, str]]:
    with serve() as (double, url):  # every service enabled
        yield double, url


def converger(url: str, **kw: Any) -> Converger:
    clients: dict[str, RestClient] = {}

    def client(service: str) -> RestClient:
        if service not in clients:
            clients[service] = RestClient(make_session("none", url), url, service=service,
                                          retry=RetryPolicy(attempts=2, base_delay=0.0))
        return clients[service]
    return Converger(client, poll_interval=0.0, sleep=lambda _: None, **kw)


def post(url: str, path: str, body: Any) -> requests.Response:
    return requests.post(url + path, json=body, timeout=10)


# --- refusals of the real APIs, reproduced --------------------------------------------------
def test_a_disabled_api_is_google_s_403_and_one_sentence(empty: tuple[GcpDouble, str]) -> None:
    _double, url = empty
    answer = requests.get(f"{url}{C}/global/networks/tai-vpc", timeout=10)
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    info = next(d for d in error["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["reason"] == "SERVICE_DISABLED"
    assert info["metadata"]["service"] == "compute.googleapis.com"
    network = project_global_items(global_cfg())[1]
    with pytest.raises(GcpApiError) as caught:
        converger(url).converge([network])
    assert caught.value.sentence() == (
        "Cannot read VPC network tai-vpc: the service compute.googleapis.com is not enabled in "
        "the project; the project phase (playbooks/project.yml, part of site.yml) enables it, "
        "or run `gcloud services enable compute.googleapis.com` and retry.")


def test_services_are_enabled_first_and_waited_for(empty: tuple[GcpDouble, str]) -> None:
    double, url = empty
    double.apis.op_polls = 3
    items = project_global_items(global_cfg())[:2]  # services, then the network
    results = converger(url).converge(items)
    assert [r.action for r in results] == ["created", "created"]
    ops = [p for m, p, _ in double.requests if p.startswith("/v1/operations/")]
    assert len(ops) == 3  # read until done, then the network could be read
    again = converger(url).converge(items)
    assert [r.action for r in again] == ["unchanged", "unchanged"]


def test_a_global_address_value_is_refused_and_an_allocated_one_read_back(
        running: tuple[GcpDouble, str]) -> None:
    double, url = running
    old = {"name": "tai-europe-west1-lb-address", "address": "35.2.2.2",
           "addressType": "EXTERNAL", "ipVersion": "IPV4"}
    refused = post(url, f"{C}/global/addresses", old)
    assert refused.status_code == 400
    assert "a global external address is allocated by Google" in refused.json()["error"][
        "message"]
    cfg = {"project": PROJECT, "region": "europe-west1", "names": {
        "address": "tai-europe-west1-lb-address", "firewall": "f", "health_check": "h",
        "backend_service": "b", "target_proxy": "t", "forwarding_rule": "r"},
        "network": "tai-vpc", "pods_range": "10.20.0.0/14",
        "lb_source_ranges": ["35.191.0.0/16"], "backend_port": 8443, "health_check_port": 50051,
        "health_check_grpc_service": "tai.Governor",
        "health_check": {"interval": 10, "timeout": 5, "healthy": 2, "unhealthy": 3},
        "lb_scheme": "EXTERNAL_MANAGED", "backend_timeout": 3600, "draining_timeout": 60,
        "zones": ["europe-west1-b"], "neg_name": "neg", "neg_wait_seconds": 1,
        "max_connections": 1000, "forwarding_port": 443, "zone_name": "z",
        "zone_dns_name": "z.example.", "record_name": "a.z.example.", "record_ttl": 60,
        "state": "active", "geo_location": "europe-west1", "expected_address": ""}
    double.apis.add_neg(PROJECT, "europe-west1-b", "neg")
    run = converger(url)
    run.converge(dns_lb_items(dns_bodies(cfg), cfg))
    allocated = run.outputs["address"]["address"]
    assert allocated and allocated != "35.2.2.2"
    assert double.apis.resources[f"{C}/global/forwardingRules/r"]["IPAddress"] == allocated
    assert not any(r.action != "unchanged"
                   for r in converger(url).converge(dns_lb_items(dns_bodies(cfg), cfg)))
    with pytest.raises(ConvergeError, match=f"holds address {allocated}, not 35.2.2.2"):
        cfg["expected_address"] = "35.2.2.2"
        converger(url).converge(dns_lb_items(dns_bodies(cfg), cfg))


CLUSTERS = "/v1/projects/p/locations/europe-west1/clusters"


def test_logging_service_with_logging_config_is_refused(running: tuple[GcpDouble, str]) -> None:
    _, url = running
    old = {"cluster": {"name": "c", "loggingService": "logging.googleapis.com/kubernetes",
                       "loggingConfig": {"componentConfig": {"enableComponents": ["WORKLOADS"]}}}}
    refused = post(url, CLUSTERS, old)
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": "Cannot specify logging_config or monitoring_config together with "
                   "logging_service or monitoring_service."}
    del old["cluster"]["loggingService"]
    assert post(url, CLUSTERS, old).status_code == 200


def test_unknown_fields_wrong_types_and_enums_get_google_s_messages(
        running: tuple[GcpDouble, str]) -> None:
    _, url = running
    bad = {"cluster": {"name": "c", "loggingServce": "x", "initialNodeCount": "two",
                       "releaseChannel": {"channel": "FASTEST"},
                       "nodePools": [{"name": "p", "config": {"spot": "yes"}}]}}
    answer = post(url, CLUSTERS, bad)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].splitlines() == [
        "Invalid JSON payload received. Unknown name \"loggingServce\" at 'cluster': Cannot "
        "find field.",
        "Invalid value at 'cluster.initial_node_count' (TYPE_INT32), \"two\"",
        "Invalid value at 'cluster.release_channel.channel' "
        "(type.googleapis.com/google.container.v1.ReleaseChannel.Channel), \"FASTEST\"",
        "Invalid value at 'cluster.node_pools[0].config.spot' (TYPE_BOOL), \"yes\""]
    violations = error["details"][0]["fieldViolations"]
    assert [v["field"] for v in violations] == [
        "cluster", "cluster.initial_node_count", "cluster.release_channel.channel",
        "cluster.node_pools[0].config.spot"]


def test_calico_with_dataplane_v2_and_private_nodes_without_ip_aliases_are_refused(
        running: tuple[GcpDouble, str]) -> None:
    _, url = running
    both = {"cluster": {"name": "c", "networkConfig": {"datapathProvider": "ADVANCED_DATAPATH"},
                        "networkPolicy": {"enabled": True, "provider": "CALICO"}}}
    answer = post(url, CLUSTERS, both)
    assert answer.status_code == 400
    assert "DatapathProvider=ADVANCED_DATAPATH is not allowed" in answer.json()["error"][
        "message"]
    private = {"cluster": {"name": "d", "privateClusterConfig": {"enablePrivateNodes": True}}}
    assert post(url, CLUSTERS, private).status_code == 400
    private["cluster"]["ipAllocationPolicy"] = {"useIpAliases": True}
    assert post(url, CLUSTERS, private).status_code == 200


def test_overlapping_subnet_ranges_are_refused(running: tuple[GcpDouble, str]) -> None:
    _, url = running
    body = {"name": "s", "network": f"projects/{PROJECT}/global/networks/n",
            "ipCidrRange": "10.0.0.0/20",
            "secondaryIpRanges": [{"rangeName": "pods", "ipCidrRange": "10.0.8.0/21"}]}
    answer = post(url, f"{C}/regions/europe-west1/subnetworks", body)
    assert answer.status_code == 400
    assert "overlaps" in answer.json()["error"]["message"]


# --- IAM: read-modify-write with the etag ---------------------------------------------------
def _project_iam(url: str) -> list[dict[str, Any]]:
    items = project_global_items(global_cfg())
    return [i for i in items if i["id"].startswith("sa-") or i["id"] == "project-iam"]


def test_someone_else_s_binding_survives_our_edit(running: tuple[GcpDouble, str]) -> None:
    double, url = running
    double.apis.add_binding(f"projects/{PROJECT}", "roles/owner", "user:alice@example.com")
    double.apis.add_binding(f"projects/{PROJECT}", "roles/datastore.user",
                            "group:analysts@example.com")
    converger(url).converge(_project_iam(url))
    bindings = {b["role"]: b["members"]
                for b in double.apis.policies[f"projects/{PROJECT}"]["bindings"]}
    assert bindings["roles/owner"] == ["user:alice@example.com"]
    assert "group:analysts@example.com" in bindings["roles/datastore.user"]
    assert f"serviceAccount:tai-governor@{PROJECT}.iam.gserviceaccount.com" in bindings[
        "roles/datastore.user"]


def test_a_concurrent_policy_edit_is_read_again_not_overwritten(
        running: tuple[GcpDouble, str]) -> None:
    double, url = running

    def someone_writes(apis: Any, resource: str) -> None:
        apis.add_binding(resource, "roles/viewer", "user:bob@example.com")

    double.apis.before_set_policy = someone_writes
    converger(url).converge(_project_iam(url))
    sets = [p for m, p, _ in double.requests if p.endswith(":setIamPolicy")]
    assert len(sets) == 2  # 409 ABORTED on the stale etag, then a merge of the new policy
    roles = {b["role"] for b in double.apis.policies[f"projects/{PROJECT}"]["bindings"]}
    assert {"roles/viewer", "roles/datastore.user", "roles/logging.logWriter"} <= roles


def test_a_new_service_account_not_yet_visible_to_iam_is_retried(
        running: tuple[GcpDouble, str]) -> None:
    double, url = running
    double.apis.iam_visibility_delay = 2
    converger(url).converge(_project_iam(url))
    answers = [p for m, p, _ in double.requests if p.endswith(":setIamPolicy")]
    assert len(answers) == 3  # two 400 "does not exist" answers, then accepted


def test_region_items_need_the_project_number_and_converge_twice_to_unchanged(
        running: tuple[GcpDouble, str]) -> None:
    _, url = running
    converger(url).converge(project_global_items(global_cfg()))
    items = project_region_items(region_cfg("europe-west1"), "europe-west1")
    first = converger(url).converge(items)
    assert {r.action for r in first} == {"created", "updated", "unchanged"}
    assert {r.action for r in converger(url).converge(items)} == {"unchanged"}


def test_an_immutable_difference_is_one_sentence(running: tuple[GcpDouble, str]) -> None:
    _, url = running
    converger(url).converge(project_global_items(global_cfg()))
    items = project_region_items(region_cfg("europe-west1"), "europe-west1")
    converger(url).converge(items)
    cfg = region_cfg("europe-west1")
    cfg["subnet_ranges"] = {**cfg["subnet_ranges"], "nodes": "10.17.0.0/20"}
    with pytest.raises(ConvergeError, match=r"subnet tai-europe-west1 in europe-west1 exists "
                                            r"with ipCidrRange different from the plan"):
        converger(url).converge(project_region_items(cfg, "europe-west1"))


# --- plan mode: the body is checked before it is written ------------------------------------
def test_plan_refuses_a_wrong_field_naming_the_file_and_the_path(tmp_path: Path) -> None:
    args = json.dumps({"dest": str(tmp_path / "gke"), "files": [{
        "path": "cluster.json", "gcp_schema": {"api": "container.v1", "schema": "Cluster"},
        "data": {"name": "c", "nodePools": [{"name": "p", "config": {"spott": True}}],
                 "releaseChannel": {"channel": "FASTEST"}}}]})
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-m", "tai_bundle", "-a", args],
                          cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert "cluster.json would be refused by the Google API (2 problem(s)); nothing was " \
           "written" in out
    assert "nodePools[0].config.spott is not a field of the NodeConfig schema" in out
    assert 'releaseChannel.channel has the value "FASTEST"' in out
    assert not (tmp_path / "gke").exists()


def test_check_mode_on_an_empty_project_reads_only_and_says_what_it_would_do(
        empty: tuple[GcpDouble, str]) -> None:
    double, url = empty
    run = converger(url, check_mode=True)
    results = run.converge(project_global_items(global_cfg()))
    # services not yet enabled answer 403 SERVICE_DISABLED: in check mode that means "create"
    assert {r.action for r in results if r.id != "project-iam"} == {"created"}
    assert all(m == "GET" or p.endswith(":getIamPolicy") for m, p, _ in double.requests)
    assert run.changed
