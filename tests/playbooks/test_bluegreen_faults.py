"""Blue-green under API faults and concurrent operators, through the playbooks.

Each region is a Kubernetes API TEST DOUBLE (tests/helpers/bluegreen_env.py) whose fault
injection answers a 500, a 429 or a connection reset on the Nth matching request, or answers
late; the operators are real ansible-playbook processes started side by side. Every outcome
is read from what the double stored (objects, selector history, request log).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from helpers.ansible_run import REPO, PlaybookRun, ansible_env, run_playbook
from helpers.bluegreen_env import NAMESPACE, BlueGreenLab
from helpers.k8s_double import Behaviour, Fault, behaviour_for_tag, image_tag
from tai_deploy.bluegreen_lease import parse_time

pytestmark = pytest.mark.playbook

INVENTORY = "tests/inventories/bluegreen"
CANARY, SECOND, LAST = "asia-southeast1", "europe-west1", "us-central1"
SVC = f"/api/v1/namespaces/{NAMESPACE}/services/governor"
DEPLOY = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
STATE = "bluegreen.tai-deploy.io/state"
NEEDS_OPERATOR = "bluegreen.tai-deploy.io/needs-operator"
# Only the patches that move the selector (not the ones that only rewrite annotations).
SELECTOR_WRITE = r'"selector"'


def versions(**services: str) -> str:
    return json.dumps({"tai_upgrade_versions": services})


def upgrade(lab: BlueGreenLab, *args: str) -> PlaybookRun:
    return run_playbook("-i", INVENTORY, "playbooks/rolling-upgrade.yml", *args, env=lab.env(),
                        timeout=300)


def rollback(lab: BlueGreenLab, *args: str) -> PlaybookRun:
    return run_playbook("-i", INVENTORY, "playbooks/rollback.yml", *args, env=lab.env(),
                        timeout=300)


def said(run: PlaybookRun) -> str:
    return " ".join(run.output.split())


def selector_slots(lab: BlueGreenLab, region: str, service: str = "governor") -> list[str]:
    return [sel["slot"] for _, sel in lab.doubles[region].selector_history[(NAMESPACE, service)]]


def selector_stored_at(lab: BlueGreenLab, region: str, slot: str,
                       service: str = "governor") -> float:
    return next(at for at, sel in lab.doubles[region].selector_history[(NAMESPACE, service)]
                if sel["slot"] == slot)


def svc_annotations(lab: BlueGreenLab, region: str, service: str = "governor") -> dict[str, str]:
    return dict(lab.service(region, service)["metadata"].get("annotations") or {})


def lease(lab: BlueGreenLab, region: str) -> dict[str, Any] | None:
    return lab.doubles[region].find("Lease", NAMESPACE, "tai-bluegreen")


class Background:
    """An ansible-playbook run in the background, its output kept in a file."""

    def __init__(self, lab: BlueGreenLab, playbook: str, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.log = lab.dir / f"background-{time.time_ns()}.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY, playbook,
             *args], cwd=REPO, env=ansible_env({**lab.env(), **(env or {})}), stdout=self._out,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        self._out.close()
        return code, " ".join(self.log.read_text().split())


# ------------------------------------------------------------------------------------------
# 1. the switch-back is retried on every retryable answer, and a final failure is loud


@pytest.mark.parametrize("fault", [
    {"status": 500, "reason": "InternalError", "message": "etcdserver: request timed out"},
    {"status": 429, "reason": "TooManyRequests", "message": "too many requests",
     "retry_after": 0.1},
    {"action": "reset"},
], ids=["500", "429", "connection-reset"])
def test_a_transient_fault_on_the_switch_back_is_retried(lab: BlueGreenLab,
                                                         fault: dict[str, Any]) -> None:
    # skip=1: the first selector write is the switch, the second the switch-back.
    injected = lab.doubles[CANARY].add_fault(
        Fault("PATCH", SVC, body=SELECTOR_WRITE, skip=1, **fault))
    run = upgrade(lab, "-e", versions(governor="v1.1.0-fail-after-swap"), "-l", CANARY,
                  "-e", "tai_upgrade_soak_seconds=4")
    assert run.returncode != 0
    assert injected.hits == 1
    assert "Switched back: governor" in said(run)
    assert selector_slots(lab, CANARY) == ["blue", "green", "blue"]
    assert lab.replicas(CANARY, "governor-blue") == 3
    assert NEEDS_OPERATOR not in svc_annotations(lab, CANARY)
    # The slot left failed by the abort is scaled down after the abort delay.
    assert lab.replicas(CANARY, "governor-green") == 0


def test_a_switch_back_that_keeps_failing_says_so_first_and_marks_the_region(
        lab: BlueGreenLab) -> None:
    lab.doubles[CANARY].add_fault(Fault("PATCH", SVC, body=SELECTOR_WRITE, skip=1, times=1000,
                                        status=500, reason="InternalError",
                                        message="etcdserver: leader changed"))
    run = upgrade(lab, "-e", versions(governor="v1.1.0-fail-after-swap"),
                  "-e", "tai_upgrade_soak_seconds=4")
    assert run.returncode != 0
    text = said(run)
    assert "SWITCH-BACK FAILED in region asia-southeast1: Service tai-system/governor still " \
           "selects slot green" in text
    assert "leader changed" in text and "after 6 attempt(s)" in text
    assert "No Service had been switched" not in text
    assert selector_slots(lab, CANARY) == ["blue", "green"]
    mark = json.loads(svc_annotations(lab, CANARY)[NEEDS_OPERATOR])
    assert "switch-back" in mark["reason"] and mark["since"]
    assert not lab.writes(SECOND) and not lab.writes(LAST)


# ------------------------------------------------------------------------------------------
# 2. the scale-down delay counts from the stored selector write


def test_a_slow_switch_write_does_not_shorten_the_scale_down_delay(lab: BlueGreenLab) -> None:
    # The switch is stored 4 s after it was sent (a slow etcd write, or retries); the delay
    # (6 s) is longer than what the play does between the switch and the scale-down.
    lab.doubles[CANARY].add_fault(Fault("PATCH", SVC, body=SELECTOR_WRITE, action="delay",
                                        delay=4))
    run = upgrade(lab, "-e", versions(governor="v1.1.0"), "-l", CANARY,
                  "-e", "tai_bluegreen_scale_down_delay=6", "-e", "tai_upgrade_soak_seconds=0.2")
    assert run.returncode == 0, run.output[-4000:]
    stored = selector_stored_at(lab, CANARY, "green")
    scale_down = next(r for r in lab.doubles[CANARY].writes(f"{DEPLOY}/governor-blue")
                      if r.body.get("spec", {}).get("replicas") == 0)
    assert scale_down.at - stored >= 6
    rec = json.loads(svc_annotations(lab, CANARY)[STATE])
    assert rec["scaledDown"] is True


# ------------------------------------------------------------------------------------------
# 3. an operator's rollback during the soak sticks


def test_an_operator_rollback_during_the_soak_stops_the_upgrade(lab: BlueGreenLab) -> None:
    # The soak only bounds the wait: the upgrade stops at its first check after the rollback,
    # so the window is longer than the rollback's run may take on a busy machine.
    running = Background(lab, "playbooks/rolling-upgrade.yml", "-e", versions(governor="v1.1.0"),
                         "-l", f"{CANARY},{SECOND}", "-e", "tai_upgrade_soak_seconds=180")
    lab.doubles[CANARY].wait_for(lambda: lab.active_slot(CANARY, "governor") == "green", 60)
    operator = rollback(lab, "-l", CANARY, "-e", "tai_rollback_break_lease=true")
    assert operator.returncode == 0, operator.output[-4000:]
    code, text = running.finish()
    assert code != 0
    assert "was aborted" in text and "asia-southeast1" in text
    assert "Regions not upgraded: europe-west1" in text
    assert not lab.writes(SECOND)
    # One switch and one switch back, by the operator; nothing finalized the rollback's record.
    assert selector_slots(lab, CANARY) == ["blue", "green", "blue"]
    assert lab.replicas(CANARY, "governor-blue") == 3
    assert json.loads(svc_annotations(lab, CANARY)[STATE])["phase"] == "rolled-back"
    # Upgrading to the aborted version again needs the override.
    again = upgrade(lab, "-e", versions(governor="v1.1.0"), "-l", CANARY)
    assert again.returncode != 0
    assert "Rolling upgrade stopped in region asia-southeast1" in said(again)
    assert ("gcr.io/ggen-project/governor:v1.1.0 was aborted on Service tai-system/governor"
            in said(again))
    assert "tai_upgrade_retry_aborted=true" in said(again)
    assert selector_slots(lab, CANARY) == ["blue", "green", "blue"]
    forced = upgrade(lab, "-e", versions(governor="v1.1.0"), "-l", CANARY,
                     "-e", "tai_upgrade_retry_aborted=true")
    assert forced.returncode == 0, forced.output[-4000:]
    assert lab.active_slot(CANARY, "governor") == "green"


# ------------------------------------------------------------------------------------------
# 4. one operation at a time per region and namespace: a Lease


def kubeconfig_with_token(lab: BlueGreenLab, token: str) -> Path:
    """The lab's kubeconfig for another operator: the same clusters, a user with ``token``."""
    config = yaml.safe_load(lab.kubeconfig.read_text(encoding="utf-8"))
    for user in config["users"]:
        user["user"] = {"token": token}
    path = lab.dir / f"kubeconfig-{token}"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_a_second_upgrade_is_refused_while_the_first_one_soaks(lab: BlueGreenLab) -> None:
    # The lease lasts 5 s (tests/inventories/bluegreen), the soak twice that: the first
    # upgrade keeps the region only by renewing the lease while it soaks. The double paces the
    # two runs, so that what is checked never depends on how fast either ansible-playbook
    # starts: the second run starts once the first holds the lease; the first run's switch
    # waits until the second run asks for the lease; that
    # request is answered once the first run has renewed the lease past the moment the lease
    # of the switch would have expired; the first run's scale-down waits until the second run
    # has ended.
    double = lab.doubles[CANARY]
    asked = double.add_fault(Fault("GET", f"{LEASE}/tai-bluegreen", action="hold",
                                   token="second-operator"))
    switch = double.add_fault(Fault("PATCH", SVC, body=SELECTOR_WRITE, action="hold"))
    scale_down = double.add_fault(Fault("PATCH", f"{DEPLOY}/governor-blue", action="hold",
                                        body=r'"replicas":\s*0\b'))
    first = Background(lab, "playbooks/rolling-upgrade.yml", "-e", versions(governor="v1.1.0"),
                       "-l", CANARY, "-e", "tai_upgrade_soak_seconds=10")
    double.wait_for(lambda: lease(lab, CANARY) is not None, 120)
    second = Background(lab, "playbooks/rolling-upgrade.yml", "-e", versions(governor="v1.2.0"),
                        "-l", CANARY, env={"KUBECONFIG": str(
                            kubeconfig_with_token(lab, "second-operator"))})
    double.wait_for(lambda: asked.hits == 1, 120)
    switch.release.set()
    double.wait_for(lambda: lab.active_slot(CANARY, "governor") == "green", 60)
    held = lease(lab, CANARY)
    assert held is not None and "rolling-upgrade" in held["spec"]["holderIdentity"]
    assert held["spec"]["leaseDurationSeconds"] > 0 and held["spec"]["acquireTime"]
    expiry_at_switch = (selector_stored_at(lab, CANARY, "green")
                        + held["spec"]["leaseDurationSeconds"])

    def renewed_past_that_expiry() -> bool:
        spec = (lease(lab, CANARY) or {}).get("spec") or {}
        renewed = parse_time(spec.get("renewTime"))
        return spec.get("holderIdentity") == held["spec"]["holderIdentity"] and (
            renewed is not None and renewed > expiry_at_switch)

    double.wait_for(renewed_past_that_expiry, 60)
    asked.release.set()
    code, text = second.finish()
    assert code != 0
    assert (f"Lease {NAMESPACE}/tai-bluegreen is held by {held['spec']['holderIdentity']} "
            f"since {held['spec']['acquireTime']}") in text
    # The first upgrade's rollback slot was not touched.
    assert lab.image(CANARY, "governor-blue") == "gcr.io/ggen-project/governor:v1.0.0"
    assert lab.replicas(CANARY, "governor-blue") == 3
    scale_down.release.set()
    code, text = first.finish()
    assert code == 0, text[-3000:]
    renewals = [r for r in lab.doubles[CANARY].writes(LEASE) if r.method == "PATCH"
                and "renewTime" in json.dumps(r.body)]
    assert len(renewals) >= 3  # renewed while it ran, the soak included
    released = lease(lab, CANARY)
    assert released is not None and not released["spec"].get("holderIdentity")


def _seed_lease(lab: BlueGreenLab, holder: str, *, age: float, duration: int) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - age))
    lab.doubles[CANARY].seed({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "tai-bluegreen", "namespace": NAMESPACE},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                 "acquireTime": stamp, "renewTime": stamp}})


def test_an_expired_lease_is_taken_over(lab: BlueGreenLab) -> None:
    _seed_lease(lab, "sre@laptop-elsewhere rolling-upgrade pid 4242", age=600, duration=60)
    run = upgrade(lab, "-e", versions(governor="v1.1.0"), "-l", CANARY)
    assert run.returncode == 0, run.output[-4000:]
    assert "took over the expired lease of sre@laptop-elsewhere rolling-upgrade pid 4242" \
        in said(run)
    assert lab.active_slot(CANARY, "governor") == "green"


def test_rollback_breaks_a_live_lease_only_when_asked(lab: BlueGreenLab) -> None:
    assert upgrade(lab, "-e", versions(governor="v1.1.0"), "-l", CANARY).returncode == 0
    _held = "sre@laptop-elsewhere rolling-upgrade pid 4242"
    requests.delete(f"{lab.doubles[CANARY].url}{LEASE}/tai-bluegreen", timeout=5)
    _seed_lease(lab, _held, age=1, duration=300)
    refused = rollback(lab, "-l", CANARY)
    assert refused.returncode != 0
    assert f"is held by {_held} since" in said(refused)
    assert "tai_rollback_break_lease=true" in said(refused)
    assert lab.active_slot(CANARY, "governor") == "green"
    broken = rollback(lab, "-l", CANARY, "-e", "tai_rollback_break_lease=true")
    assert broken.returncode == 0, broken.output[-4000:]
    assert f"broke the lease of {_held}" in said(broken)
    assert lab.active_slot(CANARY, "governor") == "blue"


# ------------------------------------------------------------------------------------------
# 5. a failed scale-down after a passed soak keeps the verified release


def test_a_failing_scale_down_keeps_the_verified_release(lab: BlueGreenLab) -> None:
    lab.doubles[CANARY].add_fault(Fault("PATCH", f"{DEPLOY}/governor-blue", times=1000,
                                        status=500, reason="InternalError",
                                        message="etcdserver: request timed out"))
    run = upgrade(lab, "-e", versions(governor="v1.1.0"))
    assert run.returncode != 0
    text = said(run)
    assert "the release stays" in text and "request timed out" in text
    assert "Regions not upgraded: europe-west1, us-central1" in text
    assert selector_slots(lab, CANARY) == ["blue", "green"]  # never switched back
    attempts = [r for r in lab.doubles[CANARY].requests
                if r.method == "PATCH" and r.path == f"{DEPLOY}/governor-blue"]
    assert len(attempts) >= 3  # retried


def test_a_transient_scale_down_error_is_retried(lab: BlueGreenLab) -> None:
    lab.doubles[CANARY].add_fault(Fault("PATCH", f"{DEPLOY}/governor-blue", status=500,
                                        reason="InternalError", message="transient"))
    run = upgrade(lab, "-e", versions(governor="v1.1.0"), "-l", CANARY)
    assert run.returncode == 0, run.output[-4000:]
    assert lab.replicas(CANARY, "governor-blue") == 0
    assert selector_slots(lab, CANARY) == ["blue", "green"]


# ------------------------------------------------------------------------------------------
# 6. rollback is instant when the active slot was scaled up


def test_rollback_switches_first_when_the_active_slot_was_scaled_up(lab: BlueGreenLab) -> None:
    double = lab.doubles[CANARY]

    def behaviour(image: str) -> Behaviour:
        tag = image_tag(image)
        return Behaviour(fail_after=2.5) if tag.endswith("-fail-late") else behaviour_for_tag(tag)

    double.behaviour = behaviour
    running = Background(lab, "playbooks/rolling-upgrade.yml",
                         "-e", versions(governor="v1.1.0-fail-late"), "-l", CANARY,
                         "-e", "tai_upgrade_soak_seconds=20")
    double.wait_for(lambda: lab.active_slot(CANARY, "governor") == "green", 60)
    # The HPA scales the serving slot up; new pods now take longer than the deadline.
    double.ready_delay = 30
    requests.patch(f"{double.url}{DEPLOY}/governor-green", json={"spec": {"replicas": 6}},
                   headers={"Content-Type": "application/merge-patch+json"},
                   timeout=5).raise_for_status()
    code, text = running.finish()
    assert code != 0
    assert "Switched back: governor" in text, text[-3000:]
    assert selector_slots(lab, CANARY) == ["blue", "green", "blue"]
    back = selector_stored_at(lab, CANARY, "blue")
    scale_up = next(r for r in lab.doubles[CANARY].writes(f"{DEPLOY}/governor-blue")
                    if r.body.get("spec", {}).get("replicas") == 6)
    assert back < scale_up.at  # traffic first, onto the slot as it stood; then the scale-up
    assert lab.replicas(CANARY, "governor-blue") == 6
