"""Blue-green numbers, measured against the Kubernetes API test double (prints, asserts nothing).

1. Rollback latency through the real playbook: a version that answers NOT_SERVING once it
   is live is rolled out to the canary region; measured from the first NOT_SERVING its pods
   answered (the first failed post-swap check) to the moment the API server stored the
   Service selector back on the old slot. Three kinds of runs: plain; with one 500 on the
   switch-back (retried); with the active slot scaled up during the soak (as an HPA would)
   while new pods take 30 s to become ready (the switch-back goes first, onto the old slot as
   it stands). Goal: worst under 2 s; Flagger's default is interval x threshold = 60 s.
2. The same switch-back done by the core alone (one module call's work: read, re-check the
   old slot, one patch), without Ansible around it.
3. The swap module's own overhead beyond waiting for readiness: wall time of a promotion
   minus the time the Deployment controller took to make the new slot fully available, for
   the core and for the whole Ansible task (process start included).

Run: .venv/bin/python benchmarks/bluegreen_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "module_utils"), str(REPO / "tests")]

import requests  # noqa: E402
from helpers.ansible_run import REPO as _REPO  # noqa: E402
from helpers.ansible_run import ansible_env, run_playbook  # noqa: E402
from helpers.bluegreen_env import NAMESPACE, BlueGreenLab  # noqa: E402
from helpers.k8s_double import (  # noqa: E402
    Behaviour,
    Fault,
    KubeApiDouble,
    behaviour_for_tag,
    image_tag,
)
from tai_deploy.bluegreen import BlueGreen, Settings, Target  # noqa: E402
from tai_deploy.k8s_api import ClusterAccess, KubeClient  # noqa: E402

CANARY = "asia-southeast1"


def _summary(name: str, values: list[float], unit: str = "s") -> None:
    print(f"  {name}: median {statistics.median(values):.3f} {unit}, "
          f"min {min(values):.3f}, max {max(values):.3f} (n={len(values)})")


KINDS = ("plain", "one 500 on the switch-back", "active slot scaled up")


def _late(image: str) -> Behaviour:
    tag = image_tag(image)
    return Behaviour(fail_after=2.5) if tag.endswith("-fail-late") else behaviour_for_tag(tag)


def _one_rollback(kind: str) -> float:
    svc = f"/api/v1/namespaces/{NAMESPACE}/services/governor"
    with tempfile.TemporaryDirectory() as tmp, \
            BlueGreenLab(Path(tmp), regions=(CANARY,)) as lab:
        double = lab.doubles[CANARY]
        extra = {"tai_upgrade_soak_seconds": 20, "tai_bluegreen_check_interval": 1.0}
        if kind == KINDS[1]:
            double.add_fault(Fault("PATCH", svc, body='"selector"', skip=1, status=500,
                                   reason="InternalError", message="injected"))
        if kind == KINDS[2]:
            double.behaviour = _late
            version = "v1.1.0-fail-late"
        else:
            version = "v1.1.0-fail-after-swap"
        args = ["-i", "tests/inventories/bluegreen", "playbooks/rolling-upgrade.yml",
                "-l", CANARY, "-e", json.dumps({"tai_upgrade_versions": {"governor": version},
                                                **extra})]
        if kind == KINDS[2]:
            proc = subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"),
                                     *args], cwd=_REPO, env=ansible_env(lab.env()),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            double.wait_for(lambda: lab.active_slot(CANARY, "governor") == "green", 120)
            double.ready_delay = 30
            requests.patch(f"{double.url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/"
                           "governor-green", json={"spec": {"replicas": 6}},
                           headers={"Content-Type": "application/merge-patch+json"},
                           timeout=5).raise_for_status()
            returncode = proc.wait(timeout=300)
        else:
            returncode = run_playbook(*args, env=lab.env()).returncode
        assert returncode != 0, "the failing version was not rolled back"
        answers = double.health_answers(NAMESPACE, "governor-green")
        first_failure = min(at for at, status in answers if status != "SERVING")
        back_at, selector = double.selector_history[(NAMESPACE, "governor")][-1]
        assert selector["slot"] == "blue"
        return back_at - first_failure


def playbook_rollback(runs: int) -> dict[str, list[float]]:
    return {kind: [_one_rollback(kind) for _ in range(runs)] for kind in KINDS}


def _promote_timing(double: KubeApiDouble, version: str, swap: BlueGreen) -> tuple[float, float]:
    started = time.time()
    swap.promote([Target("governor", version=version)])
    ended = time.time()
    dep = f"governor-{swap.outcomes['governor'].after['active_slot']}"
    history = double.status_history[(NAMESPACE, dep)]
    ready_at = min(at for at, st in history if at >= started
                   and st.get("availableReplicas") == 3 and st.get("updatedReplicas") == 3
                   and st.get("replicas") == 3)
    return ended - started, ready_at - started


def core_numbers(runs: int, ready_delay: float, poll: float = 1.0
                 ) -> tuple[list[float], list[float], list[int]]:
    rollbacks, overheads, requests = [], [], []
    with tempfile.TemporaryDirectory() as tmp, \
            BlueGreenLab(Path(tmp), regions=(CANARY,), ready_delay=ready_delay) as lab:
        double = lab.doubles[CANARY]
        with KubeClient(ClusterAccess(server=double.url)) as client:
            settings = Settings(NAMESPACE, poll_interval=poll, scale_down_delay=3600)
            for i in range(runs):
                before = len(double.requests)
                swap = BlueGreen(client, settings)
                wall, ready = _promote_timing(double, f"v1.{i + 1}.0", swap)
                overheads.append(wall - ready)
                requests.append(len(double.requests) - before)
                started = time.time()
                BlueGreen(client, settings).rollback([Target("governor")])
                rollbacks.append(time.time() - started)
                # The rollback marked the release aborted: promoting it again is the override.
                BlueGreen(client, settings, allow_aborted=True).promote(
                    [Target("governor", version=f"v1.{i + 1}.0")])
    return rollbacks, overheads, requests


def module_overhead(runs: int, ready_delay: float) -> list[float]:
    results = []
    ansible = Path(sys.executable).parent / "ansible"
    with tempfile.TemporaryDirectory() as tmp, \
            BlueGreenLab(Path(tmp), regions=(CANARY,), ready_delay=ready_delay) as lab:
        double = lab.doubles[CANARY]
        for i in range(runs):
            args = (f"api_server={double.url} service=governor version=v2.{i}.0 "
                    "poll_interval=1.0 scale_down_delay=3600")
            started = time.time()
            subprocess.run([str(ansible), "localhost", "-m", "blue_green_swap", "-a", args,
                            "-e", f"ansible_python_interpreter={sys.executable}"],
                           cwd=REPO, capture_output=True, check=True, timeout=120)
            ended = time.time()
            slot = double.get("Service", NAMESPACE, "governor")["spec"]["selector"]["slot"]
            history = double.status_history[(NAMESPACE, f"governor-{slot}")]
            ready_at = min(at for at, st in history if at >= started
                           and st.get("availableReplicas") == 3 and st.get("replicas") == 3)
            results.append((ended - started) - (ready_at - started))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rollback-runs", type=int, default=7,
                        help="playbook rollbacks of each kind (3 kinds)")
    parser.add_argument("--only-rollback", action="store_true")
    parser.add_argument("--ready-delay", type=float, default=2.0,
                        help="seconds the double's pods take to become ready")
    args = parser.parse_args()
    print("1. First failed post-swap check -> Service selector back on the old slot, "
          "through playbooks/rolling-upgrade.yml (check interval 1 s; goal: worst < 2 s):")
    latencies = playbook_rollback(args.rollback_runs)
    for kind, values in latencies.items():
        _summary(f"rollback latency, {kind}", values)
    _summary("rollback latency, all runs", [v for vs in latencies.values() for v in vs])
    if args.only_rollback:
        return
    rollbacks, overheads, requests = core_numbers(args.runs, args.ready_delay)
    print("2. Switch back by the core alone (read Service and slots, re-check, one patch):")
    _summary("rollback call", [r * 1000 for r in rollbacks], "ms")
    print(f"3. Overhead beyond readiness (pods ready after {args.ready_delay:g} s, poll "
          "interval 1 s):")
    _summary("core promote (wall - readiness)", overheads)
    print(f"  API requests per promotion: {statistics.median(requests):.0f}")
    _, fast, _ = core_numbers(args.runs, args.ready_delay, poll=0.1)
    _summary("core promote, poll interval 0.1 s", fast)
    _summary("Ansible task (process start + core)", module_overhead(args.runs, args.ready_delay))


if __name__ == "__main__":
    main()
