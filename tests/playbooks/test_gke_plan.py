"""The gke role: request bodies against docs/architecture.md, apply mode against the double.

Plan: playbooks/clusters.yml for the three regions, once (module fixture). Apply: the same
playbook with -e tai_apply=true against the loopback TEST DOUBLE of the GKE API.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO
from helpers.gcp_double import GcpDouble, serve
from helpers.gcp_plan import REGIONS, load, render

ARCHITECTURE_POOLS = {  # docs/architecture.md: machine, disk, min, max (regional totals)
    "general-pool": ("n1-standard-4", 100, 3, 10),
    "memory-pool": ("n1-highmem-8", 100, 2, 5),
    "spot-pool": ("n1-standard-4", 100, 2, 20),
}
ZONES = {"us-central1": ["us-central1-a", "us-central1-b", "us-central1-c"],
         "europe-west1": ["europe-west1-b", "europe-west1-c", "europe-west1-d"],
         "asia-southeast1": ["asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c"]}


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("build")
    render(root, "playbooks/clusters.yml")
    return root


def cluster_of(plan: Path, region: str) -> dict[str, Any]:
    body: dict[str, Any] = load(plan, region, "gke", "cluster.json")
    assert list(body) == ["cluster"]  # the clusters.create body
    return dict(body["cluster"])


@pytest.mark.parametrize("region", REGIONS)
def test_cluster_matches_the_architecture(plan: Path, region: str) -> None:
    c = cluster_of(plan, region)
    assert c["name"] == "tai-cluster"
    assert c["locations"] == ZONES[region]  # regional cluster over the region's zones
    assert "apiVersion" not in c and "kind" not in c and "nodeConfig" not in c
    assert c["addonsConfig"] == {"httpLoadBalancing": {"disabled": False},
                                 "horizontalPodAutoscaling": {"disabled": False}}
    # Workload logs are shipped by the logging role's fluent-bit; GKE's agent would bill them twice.
    assert c["loggingConfig"]["componentConfig"]["enableComponents"] == ["SYSTEM_COMPONENTS"]
    assert c["monitoringConfig"]["componentConfig"]["enableComponents"] == ["SYSTEM_COMPONENTS"]
    assert c["releaseChannel"] == {"channel": "REGULAR"}
    assert c["initialClusterVersion"] == "1.34"
    assert c["workloadIdentityConfig"] == {"workloadPool": "tai-production.svc.id.goog"}
    assert c["resourceLabels"]["region"] == region


# Checked by hand against container.v1.json (revision 20261027) of google-api-python-client:
# Cluster.network/subnetwork ("The name of the Google Compute Engine network/subnetwork"),
# IPAllocationPolicy.clusterSecondaryRangeName/servicesSecondaryRangeName,
# NetworkConfig.defaultEnablePrivateNodes (PrivateClusterConfig.enablePrivateNodes is marked
# deprecated), NetworkConfig.datapathProvider enum ADVANCED_DATAPATH, ControlPlaneEndpointsConfig
# .dnsEndpointConfig.allowExternalTraffic and .ipEndpointsConfig.{enabled, enablePublicEndpoint,
# authorizedNetworksConfig} (Cluster.masterAuthorizedNetworksConfig is deprecated),
# DatabaseEncryption.state enum ENCRYPTED with keyName
# projects/[KEY_PROJECT_ID]/locations/[LOCATION]/keyRings/[RING_NAME]/cryptoKeys/[KEY_NAME],
# BinaryAuthorization.evaluationMode enum PROJECT_SINGLETON_POLICY_ENFORCE (enabled is
# deprecated), MaintenanceWindow.recurringWindow {window {startTime, endTime}, recurrence},
# ShieldedNodes.enabled, LegacyAbac.enabled, MasterAuth.clientCertificateConfig.
@pytest.mark.parametrize("region", REGIONS)
def test_cluster_is_hardened(plan: Path, region: str) -> None:
    c = cluster_of(plan, region)
    # The API refuses loggingService/monitoringService next to loggingConfig/monitoringConfig.
    assert "loggingService" not in c and "monitoringService" not in c
    assert c["network"] == "projects/tai-production/global/networks/tai-vpc"
    assert c["subnetwork"] == f"projects/tai-production/regions/{region}/subnetworks/tai-{region}"
    assert c["ipAllocationPolicy"] == {"useIpAliases": True,
                                       "clusterSecondaryRangeName": "pods",
                                       "servicesSecondaryRangeName": "services"}
    assert c["networkConfig"] == {"defaultEnablePrivateNodes": True,
                                  "datapathProvider": "ADVANCED_DATAPATH",
                                  "enableIntraNodeVisibility": True}
    # Dataplane V2 enforces NetworkPolicy itself: no Calico policy, no policy add-on.
    assert "networkPolicy" not in c and "networkPolicyConfig" not in c["addonsConfig"]
    assert "privateClusterConfig" not in c and "masterAuthorizedNetworksConfig" not in c
    assert c["controlPlaneEndpointsConfig"] == {
        "dnsEndpointConfig": {"allowExternalTraffic": True},
        "ipEndpointsConfig": {"enabled": True, "enablePublicEndpoint": False,
                              "authorizedNetworksConfig": {
                                  "enabled": True, "cidrBlocks": [],
                                  "gcpPublicCidrsAccessEnabled": False}}}
    assert c["databaseEncryption"] == {
        "state": "ENCRYPTED",
        "keyName": f"projects/tai-production/locations/{region}/keyRings/tai-gke/cryptoKeys/"
                   "gke-secrets"}
    assert c["binaryAuthorization"] == {"evaluationMode": "PROJECT_SINGLETON_POLICY_ENFORCE"}
    assert c["maintenancePolicy"] == {"window": {"recurringWindow": {
        "window": {"startTime": "2026-01-03T03:00:00Z", "endTime": "2026-01-03T07:00:00Z"},
        "recurrence": "FREQ=WEEKLY;BYDAY=TU,WE,TH"}}}
    assert c["shieldedNodes"] == {"enabled": True}
    assert c["legacyAbac"] == {"enabled": False}
    assert c["masterAuth"] == {"clientCertificateConfig": {"issueClientCertificate": False}}
    for pool in c["nodePools"]:
        cfg = pool["config"]
        assert cfg["serviceAccount"] == "tai-gke-nodes@tai-production.iam.gserviceaccount.com"
        assert cfg["imageType"] == "COS_CONTAINERD"
        assert cfg["shieldedInstanceConfig"] == {"enableSecureBoot": True,
                                                 "enableIntegrityMonitoring": True}


@pytest.mark.parametrize("region", REGIONS)
def test_node_pools_match_the_architecture(plan: Path, region: str) -> None:
    pools = {p["name"]: p for p in cluster_of(plan, region)["nodePools"]}
    assert set(pools) == set(ARCHITECTURE_POOLS)
    for name, (machine, disk, low, high) in ARCHITECTURE_POOLS.items():
        pool = pools[name]
        assert pool["config"]["machineType"] == machine
        assert pool["config"]["diskSizeGb"] == disk
        assert pool["autoscaling"] == {
            "enabled": True, "totalMinNodeCount": low, "totalMaxNodeCount": high,
            "locationPolicy": "ANY" if name == "spot-pool" else "BALANCED"}
        # initialNodeCount is per zone: one per zone of the three.
        assert pool["initialNodeCount"] == 1
        assert pool["config"]["labels"]["region"] == region
        assert pool["config"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
        scopes = pool["config"]["oauthScopes"]
        assert "https://www.googleapis.com/auth/logging.write" in scopes
        assert "https://www.googleapis.com/auth/monitoring" in scopes
        # Workload identity supersedes a cloud-platform node scope for workloads.
        assert "https://www.googleapis.com/auth/cloud-platform" not in scopes
        assert "preemptible" not in pool["config"]
        # The node pool body (nodePools.create) is the same pool.
        assert load(plan, region, "gke", f"node-pools/{name}.json") == {"nodePool": pool}
    # The general pool's 3 initial nodes of n1-standard-4 (docs/architecture.md), one per zone.
    assert pools["general-pool"]["initialNodeCount"] * len(ZONES[region]) == 3
    assert pools["general-pool"]["config"]["labels"]["workload-type"] == "general"
    assert pools["memory-pool"]["config"]["labels"]["workload-type"] == "memory-intensive"
    spot = pools["spot-pool"]["config"]
    assert spot["spot"] is True
    assert spot["labels"]["spot"] == "true"
    assert spot["taints"] == [{"key": "spot", "value": "true", "effect": "NO_SCHEDULE"}]
    assert pools["general-pool"]["config"]["spot"] is False
    assert pools["general-pool"]["config"]["taints"] == []


def test_bad_pool_sizes_stop_the_plan_with_one_sentence(tmp_path: Path) -> None:
    from helpers.ansible_run import run_playbook

    run = run_playbook("playbooks/clusters.yml", "-l", "europe-west1", "-e",
                       f"tai_build_root={tmp_path}", "-e",
                       '{"gke_node_pools": {"memory": {"initial_nodes": 9}}}')
    assert run.returncode != 0
    assert ("Node pool memory of region europe-west1 needs min_nodes <= initial_nodes <= "
            "max_nodes, got 2, 9, 5.") in run.output
    assert not (tmp_path / "europe-west1" / "gke").exists()


def test_bad_hardening_inputs_stop_the_plan_with_one_sentence_each(tmp_path: Path) -> None:
    from helpers.ansible_run import run_playbook

    run = run_playbook("playbooks/clusters.yml", "-l", "europe-west1", "-e",
                       f"tai_build_root={tmp_path}", "-e",
                       '{"gke_control_plane_access": "authorized_networks", '
                       '"gke_maintenance_hours": 2}')
    assert run.returncode != 0
    assert ("gke_authorized_networks of region europe-west1 is []; with "
            "gke_control_plane_access authorized_networks a production cluster needs at least "
            "one network") in run.output
    assert ("gke_maintenance_hours of region europe-west1 is 2; GKE needs windows of 4 to 24 "
            "whole hours.") in run.output
    assert not (tmp_path / "europe-west1" / "gke").exists()


@pytest.mark.playbook
def test_apply_against_the_double_creates_then_changes_nothing(tmp_path: Path) -> None:
    from helpers.ansible_run import run_playbook

    kubeconfig = tmp_path / "kubeconfig"
    # Each operation stays RUNNING for 6 reads, 0.5 s apart: long enough for progress lines.
    with serve(GcpDouble(op_polls=6)) as (double, url):
        args = ("playbooks/clusters.yml", "-l", "europe-west1", "-e", "tai_apply=true",
                "-e", f"tai_build_root={tmp_path / 'build'}", "-e", f"gke_api_endpoint={url}",
                "-e", "gke_auth_kind=none", "-e", "gke_poll_interval=0.5",
                "-e", "gke_progress_interval=1", "-e", f"gke_kubeconfig_path={kubeconfig}")
        first = run_playbook(*args)
        assert first.returncode == 0, first.output[-3000:]
        assert first.recap("europe-west1")["changed"] == 3  # plan files, cluster, kubeconfig
        # The operator sees the running operation and its elapsed time, not a silent task.
        progress = re.findall(r"^\[europe-west1\] GKE operation operation-\d+ \(CREATE_CLUSTER\) "
                              r"to create cluster tai-cluster in europe-west1 \(project "
                              r"tai-production\): RUNNING, (\d+)m(\d\d)s elapsed$",
                              first.output, re.MULTILINE)
        assert progress, first.output[-3000:]
        sent = [b for m, p, b in double.requests if m == "POST"]
        assert sent == [load(tmp_path / "build", "europe-west1", "gke", "cluster.json")]
        second = run_playbook(*args)
        assert second.returncode == 0, second.output[-3000:]
        assert second.recap("europe-west1")["changed"] == 0
        assert "GKE operation" not in second.output
        assert len([r for r in double.requests if r[0] != "GET"]) == 1
        # Check mode with diff: the change is shown, live vs desired, and nothing is sent.
        checked = run_playbook(*args, "--check", "--diff", "-e", "gke_binary_authorization=false")
        assert checked.returncode == 0, checked.output[-3000:]
        assert "--- before: live tai-cluster" in checked.output
        assert "-        evaluationMode: PROJECT_SINGLETON_POLICY_ENFORCE" in checked.output
        assert "+        evaluationMode: DISABLED" in checked.output
        assert len([r for r in double.requests if r[0] != "GET"]) == 1
    cfg = yaml.safe_load(kubeconfig.read_text())
    assert [c["name"] for c in cfg["contexts"]] == [
        "gke_tai-production_europe-west1_tai-cluster"]
    server = cfg["clusters"][0]["cluster"]["server"]
    assert server.startswith("https://")
    user = cfg["users"][0]["user"]["exec"]
    assert user["apiVersion"] == "client.authentication.k8s.io/v1"
    assert Path(user["command"]).resolve() == Path(sys.executable).resolve()
    assert user["args"] == [str(REPO / "scripts" / "tai-gke-token")]


@pytest.mark.playbook
def test_apply_on_a_project_without_the_container_api_says_what_to_do(tmp_path: Path) -> None:
    from helpers.ansible_run import run_playbook

    with serve(GcpDouble.empty_project()) as (double, url):
        run = run_playbook("playbooks/clusters.yml", "-l", "europe-west1", "-e", "tai_apply=true",
                           "-e", f"tai_build_root={tmp_path}", "-e", f"gke_api_endpoint={url}",
                           "-e", "gke_auth_kind=none")
    assert run.returncode != 0
    assert ("The API container.googleapis.com is not enabled in project tai-production: run the "
            "project phase (`ansible-playbook playbooks/project.yml -l europe-west1 -e "
            "tai_apply=true`) or enable container.googleapis.com in the project.") in run.output
    assert "Traceback" not in run.output
    assert double.mutating_calls() == []
