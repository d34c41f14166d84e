"""Plan mode end to end: `ansible-playbook site.yml -l <region>` as the README runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.ansible_run import PlaybookRun, run_playbook, tree_digest

ROLES = {"autoscaling", "dns", "gke", "istio", "logging", "monitoring", "tai-services", "vault"}


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PlaybookRun, PlaybookRun]:
    root = tmp_path_factory.mktemp("plan") / "build"
    env = {"TAI_BUILD_ROOT": str(root)}
    first = run_playbook("site.yml", "-l", "europe-west1", env=env)
    second = run_playbook("site.yml", "-l", "europe-west1", env=env)
    return root, first, second


def test_plan_succeeds_without_warnings(planned: tuple[Path, PlaybookRun, PlaybookRun]) -> None:
    _, first, _ = planned
    assert first.returncode == 0, first.output[-3000:]
    assert "[WARNING]" not in first.output
    assert "[DEPRECATION" not in first.output
    assert first.recap("europe-west1")["failed"] == 0


def test_plan_touches_only_the_selected_region(
        planned: tuple[Path, PlaybookRun, PlaybookRun]) -> None:
    root, _, _ = planned
    # _project holds the project-wide objects of the project phase, planned once per run
    assert sorted(p.name for p in root.iterdir()) == ["_project", "europe-west1"]


def test_plan_prints_where_the_bundle_is(planned: tuple[Path, PlaybookRun, PlaybookRun]) -> None:
    root, first, _ = planned
    text = " ".join(first.stdout.split())
    assert f"index at {root}/europe-west1/SUMMARY.md; project-wide plan at " \
           f"{root}/_project/SUMMARY.md" in text
    # the plan is written into staging folders, but every message names where it is read
    assert (f"would converge {root}/_project/project/resources.json (once) and "
            f"{root}/europe-west1/project/resources.json.") in text
    assert ".staging" not in first.stdout


def test_summary_lists_every_role_and_artifact(
        planned: tuple[Path, PlaybookRun, PlaybookRun]) -> None:
    root, _, _ = planned
    summary = json.loads((root / "europe-west1" / "summary.json").read_text())
    assert summary["mode"] == "plan"
    assert set(summary["roles"]) >= ROLES
    on_disk = {str(p.relative_to(root / "europe-west1"))
               for p in (root / "europe-west1").rglob("*") if p.is_file()}
    listed = {a["path"] for items in summary["roles"].values() for a in items}
    assert listed == on_disk - {"SUMMARY.md", "summary.json"}


def test_second_plan_changes_nothing(planned: tuple[Path, PlaybookRun, PlaybookRun]) -> None:
    _, first, second = planned
    assert first.recap("europe-west1")["changed"] > 0
    assert second.returncode == 0
    assert second.recap("europe-west1")["changed"] == 0


def test_check_mode_reports_drift_with_a_diff_and_writes_nothing(tmp_path: Path) -> None:
    env = {"TAI_BUILD_ROOT": str(tmp_path / "build")}
    assert run_playbook("site.yml", "-l", "asia-southeast1", env=env).returncode == 0
    body = tmp_path / "build" / "asia-southeast1" / "gke" / "cluster.json"
    body.write_text(body.read_text().replace('"n1-highmem-8"', '"n1-highmem-4"'))
    before = tree_digest(tmp_path)
    # a project-wide input too: build/_project/ is not written either
    check = run_playbook("site.yml", "-l", "asia-southeast1", "--check", "--diff",
                         "-e", "project_routing_mode=REGIONAL", env=env)
    assert check.returncode == 0, check.output[-3000:]
    assert '-          "machineType": "n1-highmem-4",' in check.stdout
    assert '+          "machineType": "n1-highmem-8",' in check.stdout
    assert '+        "routingMode": "REGIONAL"' in check.stdout
    assert '"n1-highmem-4"' in body.read_text(), "check mode must not write"
    assert tree_digest(tmp_path) == before  # nothing written, no staging folder made
