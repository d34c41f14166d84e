"""End to end: the platform roles plan every region, validated, and a second run changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from helpers.ansible_run import REPO, run_playbook
from helpers.chart_render import checkov
from helpers.platform_plan import REGIONS, ROLES, render

pytestmark = pytest.mark.playbook


def test_every_region_is_planned_by_every_platform_role() -> None:
    plan = render()
    assert plan.run.returncode == 0, plan.run.output[-3000:]
    assert REGIONS == ("asia-southeast1", "europe-west1", "us-central1")
    for region in REGIONS:
        recap = plan.run.recap(region)
        assert recap["failed"] == 0
        for role in ROLES:
            assert plan.files(region, role), f"{role} planned nothing for {region}"


def test_plan_lists_the_same_artifacts_in_every_region() -> None:
    plan = render()
    for role in ROLES:
        layouts = {region: plan.files(region, role) for region in REGIONS}
        assert len({tuple(v) for v in layouts.values()}) == 1, layouts


def test_every_planned_file_is_valid_yaml_with_a_document_start() -> None:
    plan = render()
    for region in REGIONS:
        for role in ROLES:
            for rel in plan.files(region, role):
                text = (plan.region(region) / role / rel).read_text()
                assert text.startswith("---\n"), rel
                assert all(doc is not None for doc in yaml.safe_load_all(text)), rel


def test_release_files_pin_an_exact_chart_version_from_versions_yml() -> None:
    plan = render()
    pins = yaml.safe_load((REPO / "group_vars/all/versions.yml").read_text())["tai_charts"]
    by_chart = {(p["repository"], p["chart"]): str(p["version"]) for p in pins.values()}
    for region in REGIONS:
        for role in ROLES:
            for rel in plan.files(region, role):
                if rel.startswith("releases/"):
                    spec = plan.yaml(region, f"{role}/{rel}")
                    assert spec["version"] == by_chart[(spec["repository"], spec["chart"])]
                    assert spec["values_file"] == f"values/{spec['name']}.yaml"


def test_second_run_changes_nothing() -> None:
    # Every region runs the same code; one region keeps the second run short.
    plan = render()
    second = plan.rerun("-l", "europe-west1")
    assert second.returncode == 0, second.output[-3000:]
    for region in REGIONS:
        assert plan.run.recap(region)["changed"] > 0
    assert second.recap("europe-west1")["changed"] == 0, second.output[-3000:]


def test_platform_playbook_runs_namespaces_first_and_passes_apply_syntax_check() -> None:
    platform = yaml.safe_load((REPO / "playbooks/platform.yml").read_text())
    roles = [r["role"] for r in platform[0]["roles"]]
    assert roles[0] == "namespaces"
    assert roles[1:4] == ["istio", "monitoring", "logging"]
    check = run_playbook("site.yml", "--syntax-check", "-e", "tai_apply=true")
    assert check.returncode == 0, check.output[-3000:]


def test_checkov_passes_every_planned_manifest_and_each_skip_has_a_reason(
        tmp_path: Path) -> None:
    """checkov over every manifest the platform roles plan, all regions in one run (the TAI
    chart's are checked by tests/chart/test_chart.py); a skip must say why."""
    plan = render()
    assert plan.run.returncode == 0, plan.run.output[-3000:]
    count = 0
    for region in REGIONS:
        for role in ROLES:
            folder = plan.region(region) / role / "manifests"
            for path in sorted(folder.rglob("*.yaml")):
                target = tmp_path / region / role / path.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                count += 1
    assert count > 0
    report = checkov(tmp_path)
    failed = [(c["check_id"], c["resource"], c["file_path"])
              for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason.split()) >= 8, (check["check_id"], check["resource"], reason)
