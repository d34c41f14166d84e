"""Input checks of the project phase (tai_deploy.project_checks) and the names it shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tai_deploy.project_checks import check_project

REPO = Path(__file__).resolve().parents[1]
GOOD: dict[str, Any] = {
    "tai_network_name": "tai-vpc", "tai_subnet_name": "tai-europe-west1",
    "tai_pods_range_name": "pods", "tai_services_range_name": "services",
    "tai_region_subnet_ranges": {"nodes": "10.16.0.0/20", "pods": "10.20.0.0/14",
                                 "services": "10.24.0.0/20"},
    "all_subnet_ranges": {
        "us-central1": {"nodes": "10.0.0.0/20", "pods": "10.4.0.0/14", "services": "10.8.0.0/20"},
        "europe-west1": {"nodes": "10.16.0.0/20", "pods": "10.20.0.0/14",
                         "services": "10.24.0.0/20"}},
}


def test_the_production_inventory_passes() -> None:
    ranges = {r: yaml.safe_load((REPO / "inventories" / "production" / "host_vars" /
                                 f"{r}.yml").read_text())["tai_region_subnet_ranges"]
              for r in ("us-central1", "europe-west1", "asia-southeast1")}
    for region, mine in ranges.items():
        values = {**GOOD, "tai_subnet_name": f"tai-{region}", "tai_region_subnet_ranges": mine,
                  "all_subnet_ranges": ranges}
        assert check_project(region, values) == []


@pytest.mark.parametrize(("override", "expected"), [
    ({"tai_network_name": "TAI_VPC"},
     "tai_network_name of region europe-west1 must be a Compute Engine name (1-63 lowercase "
     "letters, digits and hyphens, starting with a letter), got 'TAI_VPC'."),
    ({"tai_services_range_name": "pods"},
     "tai_pods_range_name and tai_services_range_name of region europe-west1 are both 'pods'"),
    ({"tai_region_subnet_ranges": {"nodes": "10.16.0.1/20", "pods": "10.20.0.0/14",
                                   "services": "10.24.0.0/20"}},
     "tai_region_subnet_ranges of region europe-west1.nodes must be an IPv4 CIDR such as "
     "10.16.0.0/20 with no host bits set, got '10.16.0.1/20'."),
    ({"tai_region_subnet_ranges": {"nodes": "10.16.0.0/20", "pods": "10.16.0.0/14",
                                   "services": "10.24.0.0/20"}},
     "nodes 10.16.0.0/20 overlaps pods 10.16.0.0/14; the three ranges of a subnet must be "
     "disjoint."),
    ({"tai_region_subnet_ranges": {"nodes": "10.0.0.0/20", "pods": "10.20.0.0/14",
                                   "services": "10.24.0.0/20"}},
     "tai_region_subnet_ranges.nodes of region europe-west1 (10.0.0.0/20) overlaps nodes of "
     "region us-central1 (10.0.0.0/20); regions share one VPC, so their ranges must be "
     "disjoint."),
    ({"tai_region_subnet_ranges": {"nodes": "8.8.0.0/20", "pods": "10.20.0.0/14",
                                   "services": "10.24.0.0/20"}},
     "nodes must be a private range (RFC 1918), got 8.8.0.0/20."),
    ({"tai_region_subnet_ranges": {"nodes": "10.16.0.0/20", "pods": "10.20.0.0/24",
                                   "services": "10.24.0.0/20"}},
     "pods is a /24, smaller than the /21 GKE needs at least"),
    ({"tai_region_subnet_ranges": {"nodes": "10.16.0.0/20"}},
     "lacks pods, services; give a CIDR for each of nodes, pods and services."),
])
def test_each_problem_is_one_sentence(override: dict[str, Any], expected: str) -> None:
    errors = check_project("europe-west1", {**GOOD, **override})
    assert len(errors) == 1, errors
    assert expected in errors[0]


def test_the_project_phase_keeps_the_names_the_plan_already_uses() -> None:
    """Google service accounts the other roles and the chart name must be the ones created."""
    defaults = (REPO / "roles" / "project" / "defaults" / "main.yml").read_text()
    created = {a["name"] for a in yaml.safe_load(defaults)["project_service_accounts"]}
    logging = yaml.safe_load((REPO / "roles" / "logging" / "defaults" / "main.yml").read_text())
    vault = yaml.safe_load((REPO / "roles" / "vault" / "defaults" / "main.yml").read_text())
    chart = yaml.safe_load((REPO / "charts" / "tai-chart" / "values.yaml").read_text())
    prefix = chart["serviceAccounts"]["gcpServiceAccountPrefix"]
    assert {f"{prefix}{svc}" for svc in chart["services"]} <= created
    assert logging["logging_fluent_bit_gcp_service_account"].split("@")[0] in created
    assert vault["vault_gcp_service_account"].split("@")[0] in created
    project = yaml.safe_load(defaults)
    assert project["project_firestore_database"] == chart["app"]["firestoreDatabase"]
    assert project["project_vault_key_ring"] == vault["vault_gcpckms"]["key_ring"]
    assert project["project_vault_crypto_key"] == vault["vault_gcpckms"]["crypto_key"]


def test_the_validation_play_reports_the_network_inputs_with_every_other_problem(
        tmp_path: Path) -> None:
    """The project phase's inputs are checked by the first play, in the same run as every other
    input (not one run later, by the project role), and nothing is written."""
    import json

    from helpers.ansible_run import run_playbook
    root = tmp_path / "build"
    bad = {"tai_network_name": "TAI_VPC", "gke_max_pods_per_node": 300,
           "tai_region_subnet_ranges": {"nodes": "10.0.0.0/20", "pods": "10.20.0.0/14",
                                        "services": "10.24.0.0/20"}}
    run = run_playbook("site.yml", "-l", "europe-west1", "-e", json.dumps(bad),
                       env={"TAI_BUILD_ROOT": str(root)})
    assert run.returncode != 0, run.output[-3000:]
    text = " ".join(run.output.split())
    for sentence in (
            "tai_network_name of region europe-west1 must be a Compute Engine name (1-63 "
            "lowercase letters, digits and hyphens, starting with a letter), got 'TAI_VPC'.",
            "tai_region_subnet_ranges.nodes of region europe-west1 (10.0.0.0/20) overlaps nodes "
            "of region us-central1 (10.0.0.0/20); regions share one VPC, so their ranges must be "
            "disjoint.",
            "gke_max_pods_per_node of region europe-west1 is 300; it must be a whole number from "
            "8 to 256."):
        assert sentence in text, sentence
    assert "TASK [project" not in run.stdout
    assert not root.exists()
