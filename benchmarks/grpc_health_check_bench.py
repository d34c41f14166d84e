"""Benchmark: 100 gRPC endpoints in one grpc_health_check call vs one task per endpoint.

Starts 50 real grpcio health servers on loopback in this process. The 100 targets are:
50 healthy (overall health of each server), 25 NOT_SERVING (a draining service registered on
25 of those servers) and 25 addresses where nothing listens. Then times

- the core alone (``run_health_checks`` in this process, best of 3),
- one ansible-playbook run with ONE grpc_health_check task checking all 100 targets,
- one ansible-playbook run with ONE task looping over the 100 targets (one module run each),

and prints the playbook wall times, the task durations (from the json callback) and the ratio.
Goal of issue 4: the single call under 1.5 s on a 2-core machine.

    .venv/bin/python benchmarks/grpc_health_check_bench.py [--skip-loop]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "module_utils"), str(REPO / "tests")]

from helpers.grpc_servers import HealthServer, free_port  # noqa: E402
from tai_deploy.grpc_health import run_health_checks, targets_from_params  # noqa: E402

BIN = Path(sys.executable).parent


def start_targets(servers: int) -> tuple[list[HealthServer], list[dict[str, Any]]]:
    started = [HealthServer({"": "SERVING", "tai.Draining": "NOT_SERVING"}, workers=2).start()
               for _ in range(servers)]
    targets: list[dict[str, Any]] = [{"name": f"healthy-{i}", "address": s.address}
                                     for i, s in enumerate(started)]
    targets += [{"name": f"draining-{i}", "address": s.address, "service": "tai.Draining"}
                for i, s in enumerate(started[: servers // 2])]
    targets += [{"name": f"down-{i}", "address": f"127.0.0.1:{free_port()}"}
                for i in range(servers // 2)]
    return started, targets


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_playbook(workdir: Path, name: str, task: dict[str, Any]) -> tuple[float, float, Any]:
    """Wall time of ansible-playbook, duration of its task, and the task's result."""
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": ["targets.json"],
             "vars": {"ansible_python_interpreter": sys.executable}, "tasks": [task]}]
    (workdir / f"{name}.yml").write_text(json.dumps(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"),
           "ANSIBLE_LIBRARY": str(REPO / "library"),
           "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
           "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    started = time.monotonic()
    proc = subprocess.run([BIN / "ansible-playbook", f"{name}.yml"], cwd=workdir, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (result,) = json.loads(proc.stdout)["plays"][0]["tasks"]
    duration = result["task"]["duration"]
    return wall, _seconds(duration["end"]) - _seconds(duration["start"]), result["hosts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=50,
                        help="healthy servers; targets = 2 x servers (default 50 -> 100)")
    parser.add_argument("--skip-loop", action="store_true", help="skip the slow loop variant")
    args = parser.parse_args()

    servers, targets = start_targets(args.servers)
    try:
        params = {"targets": targets, "connect_timeout": 1.0, "rpc_timeout": 1.0}
        core_times = []
        for _ in range(3):
            started = time.monotonic()
            report = run_health_checks(targets_from_params(params))
            core_times.append(time.monotonic() - started)
        print(f"targets: {len(targets)} ({report.summary()})")
        print(f"core only (run_health_checks, best of 3): {min(core_times):.3f} s")

        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            (workdir / "ansible.cfg").write_text("[defaults]\n")
            (workdir / "targets.json").write_text(json.dumps({"bench_targets": targets}))
            single_wall, single_task, single = run_playbook(workdir, "single", {
                "grpc_health_check": {"targets": "{{ bench_targets }}",
                                      "fail_on_unhealthy": False}})
            summary = single["localhost"]["summary"]
            print(f"one module call:  playbook {single_wall:.3f} s, task {single_task:.3f} s"
                  f"  (summary {summary})")
            goal = "met" if single_wall < 1.5 else "NOT met"
            print(f"goal 'single call under 1.5 s': {goal} (whole ansible-playbook run)")
            if args.skip_loop:
                return
            loop_wall, loop_task, _ = run_playbook(workdir, "loop", {
                "grpc_health_check": {"targets": ["{{ item }}"], "fail_on_unhealthy": False},
                "loop": "{{ bench_targets }}", "loop_control": {"label": "{{ item.name }}"}})
            print(f"one task per endpoint (loop): playbook {loop_wall:.3f} s, "
                  f"task {loop_task:.3f} s")
            print(f"ratio loop/single: playbook {loop_wall / single_wall:.1f}x, "
                  f"task {loop_task / single_task:.1f}x")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
