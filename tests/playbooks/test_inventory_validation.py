"""The first play refuses bad inventories, limits and extra vars with one sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers.ansible_run import REPO, PlaybookRun, run_playbook
from tai_deploy.inventory import RegionVars, check_node_pools, check_region

GOOD = {
    "tai_gcp_project": "tai-production",
    "tai_apply": False,
    "tai_kubernetes_version": "1.34",
    "tai_region_tier": "secondary",
    "tai_region_zones": ["europe-west1-b", "europe-west1-c"],
    "tai_region_lb_address": "35.2.2.2",
    "tai_region_dns_geo_location": "europe-west1",
    "gke_node_pools": None,
}


def assert_one_sentence(run: PlaybookRun, *fragments: str) -> None:
    assert run.returncode != 0, run.output[-2000:]
    assert "Traceback" not in run.output
    for fragment in fragments:
        assert fragment in run.output, f"{fragment!r} not in:\n{run.output[-3000:]}"
    # Nothing after the validation play ran: no role task appears in the output.
    assert "TASK [gke" not in run.stdout


# ---- the core, directly ---------------------------------------------------------------------

def test_good_region_has_no_errors() -> None:
    assert check_region(RegionVars("europe-west1", GOOD)) == []


def test_the_load_balancer_address_is_optional() -> None:
    # Google allocates it; a value kept in the inventory is compared at apply.
    assert check_region(RegionVars("europe-west1", {**GOOD, "tai_region_lb_address": None})) == []


def test_a_chart_mirror_may_be_a_repository_or_an_oci_registry() -> None:
    for mirror in ("", "https://charts.internal.example.com/tai", "http://127.0.0.1:8879",
                   "oci://registry.internal.example.com/helm-charts"):
        assert check_region(RegionVars("europe-west1", {**GOOD, "tai_chart_mirror": mirror})) == []


def test_string_booleans_from_key_value_extra_vars_are_accepted() -> None:
    assert check_region(RegionVars("europe-west1", {**GOOD, "tai_apply": "true"})) == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"tai_region_dns_geo_location": None},
         "Required variable tai_region_dns_geo_location is not set for region europe-west1"),
        ({"tai_region_zones": "europe-west1-b"},
         "tai_region_zones of region europe-west1 must be a non-empty list"),
        ({"tai_region_zones": ["us-central1-a"]}, "lists zones outside the region: us-central1-a"),
        ({"tai_region_lb_address": "10.0.0.1"}, "must be a public IPv4 address, got '10.0.0.1'"),
        ({"tai_region_tier": "quaternary"}, "must be one of primary, secondary, tertiary"),
        ({"tai_apply": "maybe"}, "tai_apply must be true or false"),
        ({"tai_kubernetes_version": 1.34}, 'must be a quoted minor version such as "1.34"'),
        ({"tai_gcp_project": "X"}, "must be a GCP project id"),
        ({"tai_region_dns_geo_location": "europe"}, "must be a GCP region name"),
        ({"tai_chart_mirror": "charts.internal.example.com"},
         "tai_chart_mirror must be a chart repository URL (https://...) or an OCI registry"),
        ({"tai_chart_mirror": "https://user:pw@charts.internal.example.com"},
         "tai_chart_mirror must be a plain URL without credentials"),
        ({"gke_node_pools": {"general": {"min_nodes": 5, "max_nodes": 3}}},
         "gke_node_pools.general of region europe-west1 has min_nodes 5 greater than max_nodes 3"),
    ],
)
def test_each_bad_value_gives_one_sentence(override: dict[str, object], expected: str) -> None:
    errors = check_region(RegionVars("europe-west1", {**GOOD, **override}))
    assert len(errors) == 1, errors
    assert expected in errors[0]
    assert errors[0].endswith(".")


def test_node_pool_sizes_must_be_non_negative_integers() -> None:
    errors = check_node_pools("r", {"spot": {"min_nodes": -1, "max_nodes": "many"}})
    assert len(errors) == 2
    assert all("must be a non-negative integer" in e for e in errors)


# ---- through ansible-playbook, as an SRE types it -------------------------------------------

@pytest.fixture
def build_root(tmp_path: Path) -> dict[str, str]:
    return {"TAI_BUILD_ROOT": str(tmp_path / "build")}


def test_unknown_region_in_limit_stops_the_run(build_root: dict[str, str]) -> None:
    run = run_playbook("site.yml", "-l", "europe-west9", env=build_root)
    assert_one_sentence(run, "Could not match supplied host pattern", "europe-west9")
    assert not Path(build_root["TAI_BUILD_ROOT"]).exists()


def test_typo_in_a_multi_region_limit_stops_instead_of_skipping(
        build_root: dict[str, str]) -> None:
    run = run_playbook("site.yml", "-l", "us-central1,europe-wst1", env=build_root)
    assert_one_sentence(run, "europe-wst1")
    assert not Path(build_root["TAI_BUILD_ROOT"]).exists()


def test_limit_that_selects_no_region_stops_the_run(build_root: dict[str, str]) -> None:
    run = run_playbook("site.yml", "-l", "tai_primary:&tai_asia", env=build_root)
    assert_one_sentence(run, "--limit leaves us with no hosts to target")


def test_wrong_type_in_extra_vars(build_root: dict[str, str]) -> None:
    run = run_playbook("site.yml", "-l", "europe-west1", "-e",
                       json.dumps({"tai_region_zones": "europe-west1-b"}), env=build_root)
    assert_one_sentence(run, "tai_region_zones of region europe-west1 must be a non-empty list")


def test_min_nodes_above_max_nodes(build_root: dict[str, str]) -> None:
    pools = {"gke_node_pools": {"memory": {"min_nodes": 6, "max_nodes": 5}}}
    run = run_playbook("site.yml", "-l", "europe-west1", "-e", json.dumps(pools), env=build_root)
    assert_one_sentence(run, "gke_node_pools.memory of region europe-west1 has min_nodes 6 "
                             "greater than max_nodes 5.")


def test_impossible_apply_switch(build_root: dict[str, str]) -> None:
    run = run_playbook("site.yml", "-l", "europe-west1", "-e", "tai_apply=maybe", env=build_root)
    assert_one_sentence(run, "tai_apply must be true or false, got a string 'maybe'")


def test_missing_host_variable(tmp_path: Path, build_root: dict[str, str]) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories" / "production", inventory)
    host_vars = inventory / "host_vars" / "asia-southeast1.yml"
    data = yaml.safe_load(host_vars.read_text())
    del data["tai_region_dns_geo_location"]
    host_vars.write_text(yaml.safe_dump(data))
    run = run_playbook("site.yml", "-i", str(inventory), "-l", "asia-southeast1", env=build_root)
    assert_one_sentence(
        run, "Required variable tai_region_dns_geo_location is not set for region "
             "asia-southeast1")
