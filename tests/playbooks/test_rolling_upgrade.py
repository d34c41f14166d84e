"""End-to-end: playbooks/rolling-upgrade.yml and playbooks/rollback.yml against three regions.

Each region is a Kubernetes API TEST DOUBLE seeded like the chart (tests/helpers/
bluegreen_env.py); the "pods" are real gRPC health servers on loopback, reached through the
doubles' kube-proxy, and the image tag decides how they behave (see
helpers/k8s_double/behaviour.py).
The inventory is tests/inventories/bluegreen (short deadlines and soak window).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.ansible_run import REPO, PlaybookRun, ansible_env, run_playbook
from helpers.bluegreen_env import NAMESPACE, REGIONS, BlueGreenLab
from helpers.k8s_double import Fault

pytestmark = pytest.mark.playbook

INVENTORY = "tests/inventories/bluegreen"
CANARY, SECOND, LAST = "asia-southeast1", "europe-west1", "us-central1"
IMAGE = "gcr.io/ggen-project/{}:{}"


def versions(**services: str) -> str:
    return json.dumps({"tai_upgrade_versions": services})


def upgrade(lab: BlueGreenLab, *args: str) -> PlaybookRun:
    return run_playbook("-i", INVENTORY, "playbooks/rolling-upgrade.yml", *args, env=lab.env(),
                        timeout=300)


def said(run: PlaybookRun) -> str:
    """The run's output with line wrapping undone (the YAML callback folds long messages)."""
    return " ".join(run.output.split())


def first_write(lab: BlueGreenLab, region: str) -> float:
    return min(float(r.at) for r in lab.writes(region))


def selector_slots(lab: BlueGreenLab, region: str, service: str = "governor") -> list[str]:
    return [sel["slot"] for _, sel in lab.doubles[region].selector_history[(NAMESPACE, service)]]


def untouched(lab: BlueGreenLab, region: str) -> bool:
    return not lab.writes(region)


# ------------------------------------------------------------------------------------------
# 1 and 7


def test_happy_path_canary_first_then_a_second_run_changes_nothing(lab: BlueGreenLab) -> None:
    run = upgrade(lab, "-e", versions(governor="v1.1.0", scheduler="v1.1.0"))
    assert run.returncode == 0, run.output[-4000:]
    assert "Upgrade order (canary first): asia-southeast1 -> europe-west1 -> us-central1" \
        in said(run)
    # One region at a time, canary first: a region starts after the previous one finished.
    assert first_write(lab, CANARY) < first_write(lab, SECOND) < first_write(lab, LAST)
    assert max(r.at for r in lab.writes(CANARY)) < first_write(lab, SECOND)
    for region in REGIONS:
        for service in ("governor", "scheduler"):
            assert lab.active_slot(region, service) == "green"
            assert lab.image(region, f"{service}-green") == IMAGE.format(service, "v1.1.0")
            assert lab.replicas(region, f"{service}-green") == 3
            assert lab.replicas(region, f"{service}-blue") == 0  # finalized
            assert selector_slots(lab, region, service) == ["blue", "green"]
        assert lab.active_slot(region, "coordinator") == "blue"  # not asked for
        assert run.recap(region)["changed"] == 3

    writes = {r: len(lab.writes(r)) for r in REGIONS}
    again = upgrade(lab, "-e", versions(governor="v1.1.0", scheduler="v1.1.0"))
    assert again.returncode == 0, again.output[-4000:]
    for region in REGIONS:
        assert again.recap(region)["changed"] == 0
    assert writes == {r: len(lab.writes(r)) for r in REGIONS}


# ------------------------------------------------------------------------------------------
# 2, 3, 4: the canary fails; the later regions are never touched


def test_never_available_stops_at_the_deadline_without_switching(lab: BlueGreenLab) -> None:
    run = upgrade(lab, "-e", versions(governor="v1.1.0-never"),
                  "-e", "tai_bluegreen_progress_deadline=1.5")
    assert run.returncode != 0
    assert "Rolling upgrade stopped in region asia-southeast1" in said(run)
    assert "governor-green did not become fully available within 1.5 s" in said(run)
    assert "No Service had been switched" in said(run)
    assert "Regions not upgraded: europe-west1, us-central1" in said(run)
    assert lab.active_slot(CANARY, "governor") == "blue"
    assert selector_slots(lab, CANARY) == ["blue"]
    # The serving slot was never written to.
    assert not [r for r in lab.writes(CANARY) if "governor-blue" in r.path]
    assert lab.replicas(CANARY, "governor-blue") == 3
    assert untouched(lab, SECOND) and untouched(lab, LAST)


def test_unhealthy_before_the_switch_is_not_switched(lab: BlueGreenLab) -> None:
    run = upgrade(lab, "-e", versions(governor="v1.1.0-sick"))
    assert run.returncode != 0
    assert ("Rolling upgrade stopped in region asia-southeast1 (Check the new pods through the "
            "preview Services): 1 of 1 gRPC target(s) unhealthy: governor (preview)") in said(run)
    assert "not_serving" in said(run) and "No Service had been switched" in said(run)
    assert selector_slots(lab, CANARY) == ["blue"]
    assert lab.replicas(CANARY, "governor-blue") == 3
    assert untouched(lab, SECOND) and untouched(lab, LAST)


def test_failing_after_the_switch_is_switched_back_at_once(
        lab: BlueGreenLab, record_property: Callable[[str, object], None]) -> None:
    run = upgrade(lab, "-e", versions(governor="v1.1.0-fail-after-swap", scheduler="v1.1.0"),
                  "-e", "tai_upgrade_soak_seconds=4")
    assert run.returncode != 0
    assert ("(Stop if the active path was unhealthy during the soak window): 1 of 2 gRPC "
            "target(s) unhealthy: governor") in said(run)
    assert "Switched back: governor, scheduler" in said(run)
    assert "Regions not upgraded: europe-west1, us-central1" in said(run)
    assert selector_slots(lab, CANARY) == ["blue", "green", "blue"]
    assert selector_slots(lab, CANARY, "scheduler") == ["blue", "green", "blue"]
    assert lab.replicas(CANARY, "governor-blue") == 3
    assert untouched(lab, SECOND) and untouched(lab, LAST)
    # Time from the first failed check (the first NOT_SERVING the new pods answered) to the
    # selector back on blue, as the API server saw it. Recorded, not asserted (see the
    # benchmark for numbers).
    answers = lab.doubles[CANARY].health_answers(NAMESPACE, "governor-green")
    first_failure = min(at for at, status in answers if status != "SERVING")
    back = lab.doubles[CANARY].selector_history[(NAMESPACE, "governor")][-1][0]
    assert back > first_failure
    record_property("rollback_seconds", round(back - first_failure, 3))
    print(f"first failed check -> selector back on blue: {back - first_failure:.3f} s")


# ------------------------------------------------------------------------------------------
# 5: interrupted, then rerun


def _start(lab: BlueGreenLab, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY,
         "playbooks/rolling-upgrade.yml", *args],
        cwd=REPO, env=ansible_env(lab.env()), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def _kill_when(lab: BlueGreenLab, proc: subprocess.Popen[str], condition: object) -> None:
    try:
        lab.doubles[CANARY].wait_for(condition, timeout=60)  # type: ignore[arg-type]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the controller is lost mid-run
        proc.wait(timeout=30)


def test_interrupted_runs_converge_when_run_again(lab: BlueGreenLab) -> None:
    limit = ("-l", f"{CANARY},{SECOND}")
    slow = versions(governor="v1.1.0-slow")
    # Killed while the canary waits for its new slot to become available.
    proc = _start(lab, "-e", slow, *limit)
    _kill_when(lab, proc, lambda: lab.deployment(CANARY, "governor-green") is not None)
    assert lab.active_slot(CANARY, "governor") == "blue"
    # Killed during the canary's soak window, after the switch.
    proc = _start(lab, "-e", slow, "-e", "tai_upgrade_soak_seconds=30", *limit)
    _kill_when(lab, proc, lambda: lab.active_slot(CANARY, "governor") == "green")
    assert lab.replicas(CANARY, "governor-blue") == 3  # still warm for a rollback
    assert untouched(lab, SECOND)
    # Run again: the canary's soak is done again and finalized, then the next region.
    run = upgrade(lab, "-e", slow, *limit)
    assert run.returncode == 0, run.output[-4000:]
    for region in (CANARY, SECOND):
        assert lab.active_slot(region, "governor") == "green"
        assert lab.image(region, "governor-green") == IMAGE.format("governor", "v1.1.0-slow")
        assert lab.replicas(region, "governor-blue") == 0
        assert selector_slots(lab, region) == ["blue", "green"]  # one switch, no flapping
    assert "Verify the new versions through the active Services" in said(run)
    assert untouched(lab, LAST)


# ------------------------------------------------------------------------------------------
# 6: a conflict on the Service patch


def test_a_conflict_on_the_service_patch_is_retried(lab: BlueGreenLab) -> None:
    fault = lab.doubles[CANARY].add_fault(
        Fault("PATCH", f"/api/v1/namespaces/{NAMESPACE}/services/governor", action="touch"))
    run = upgrade(lab, "-e", versions(governor="v1.1.0"), "-l", CANARY)
    assert run.returncode == 0, run.output[-4000:]
    assert fault.hits == 1
    patches = [r.status for r in lab.doubles[CANARY].requests
               if r.method == "PATCH" and r.path.endswith("/services/governor")]
    assert patches[:2] == [409, 200]
    assert lab.active_slot(CANARY, "governor") == "green"


# ------------------------------------------------------------------------------------------
# plan mode, bad input, rollback.yml


def test_plan_mode_reports_and_changes_nothing(lab: BlueGreenLab) -> None:
    run = upgrade(lab, "-e", versions(governor="v1.1.0"), "-e", "tai_apply=false", "--diff",
                  "-l", CANARY)
    assert run.returncode == 0, run.output[-4000:]
    assert "active_slot: green" in said(run) or '"active_slot": "green"' in said(run)
    assert "(plan mode: nothing changed)" in said(run)
    assert untouched(lab, CANARY)


@pytest.mark.parametrize(("extra", "message"), [
    ((), "tai_upgrade_versions is required: give the new version per service"),
    (("-e", versions(governer="v1.1.0")), "names an unknown service governer"),
    (("-e", '{"tai_upgrade_versions": {"governor": 1.1}}',
      "-e", "tai_upgrade_canary_region=europe-wst1"),
     "tai_upgrade_versions.governor must be an image tag such as v1.1.0 (quoted), optionally "
     "with its digest (v1.1.0@sha256:<64 hex digits>), got 1.1; "
     'tai_upgrade_canary_region "europe-wst1" is not a region of the inventory'),
])
def test_bad_input_stops_with_one_sentence(lab: BlueGreenLab, extra: tuple[str, ...],
                                           message: str) -> None:
    run = upgrade(lab, *extra)
    assert run.returncode != 0
    assert message in said(run)
    assert "Traceback" not in run.output
    assert all(untouched(lab, r) for r in REGIONS)


PRODUCTION = ("-e", "tai_environment=production",
              "-e", "tai_services_allow_undigested_images=false")


def test_production_deploys_versions_pinned_by_digest(lab: BlueGreenLab) -> None:
    pinned = "v1.1.0@sha256:" + "3b" * 32
    run = upgrade(lab, "-e", versions(governor=pinned), *PRODUCTION, "-l", CANARY)
    assert run.returncode == 0, run.output[-4000:]
    assert lab.active_slot(CANARY, "governor") == "green"
    assert lab.image(CANARY, "governor-green") == IMAGE.format("governor", pinned)
    again = upgrade(lab, "-e", versions(governor=pinned), *PRODUCTION, "-l", CANARY)
    assert again.returncode == 0 and again.recap(CANARY)["changed"] == 0


@pytest.mark.parametrize(("extra", "message"), [
    (PRODUCTION, 'tai_upgrade_versions.governor ("v1.1.0") of region asia-southeast1 has no '
     "image digest; production images must be pinned as tag@sha256: give it as "
     "v1.1.0@sha256:<the registry's digest of v1.1.0>."),
    # The development override is refused in production, as by the plan.
    (("-e", "tai_environment=production"), "tai_services_allow_undigested_images of region "
     "europe-west1 is true in environment production; it is meant for development "
     "environments only"),
    (("-e", "tai_services_allow_undigested_images=false"), 'tai_upgrade_versions.governor '
     '("v1.1.0") of region us-central1 has no image digest; pin it as tag@sha256 (give it as '
     "v1.1.0@sha256:<the registry's digest of v1.1.0>), or set "
     "tai_services_allow_undigested_images: true in this test environment."),
])
def test_a_version_without_its_digest_is_refused_where_the_plan_refuses_it(
        lab: BlueGreenLab, extra: tuple[str, ...], message: str) -> None:
    run = upgrade(lab, "-e", versions(governor="v1.1.0", coordinator="v1.1.0"), *extra)
    assert run.returncode != 0
    assert message in said(run)
    assert "Traceback" not in run.output
    assert all(untouched(lab, r) for r in REGIONS)


def test_rollback_playbook_one_region_on_demand(lab: BlueGreenLab) -> None:
    assert upgrade(lab, "-e", versions(governor="v1.1.0"), "-l", CANARY).returncode == 0
    assert lab.replicas(CANARY, "governor-blue") == 0  # finalized: rollback must scale up
    env = lab.env()
    refused = run_playbook("-i", INVENTORY, "playbooks/rollback.yml", env=env)
    assert refused.returncode != 0
    assert "choose the regions to roll back: -l <region> for one" in said(refused)
    run = run_playbook("-i", INVENTORY, "playbooks/rollback.yml", "-l", CANARY, env=env)
    assert run.returncode == 0, run.output[-4000:]
    assert "switched back from slot green" in said(run)
    assert "no switch is recorded on the Service; nothing to roll back" in said(run)
    assert lab.active_slot(CANARY, "governor") == "blue"
    assert lab.replicas(CANARY, "governor-blue") == 3
    assert lab.replicas(CANARY, "governor-green") == 3  # kept for diagnosis
    again = run_playbook("-i", INVENTORY, "playbooks/rollback.yml", "-l", CANARY, env=env)
    assert again.returncode == 0 and again.recap(CANARY)["changed"] == 0
    assert untouched(lab, SECOND) and untouched(lab, LAST)
