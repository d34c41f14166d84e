"""Analysis-gate numbers through the real playbook and a real Prometheus (prints, asserts nothing).

A version that fails half of its RPCs once it serves live traffic (tag suffix ``-errors``,
tests/helpers/grpc_metrics.py) is rolled out to the canary region of the Kubernetes API test
double; Debian's Prometheus scrapes the gRPC servers every ``--scrape`` seconds and the
soak's gate queries it every ``--interval`` seconds (window 5 s). Measured: from the first
scrape that holds an error of the new slot (its timestamp in Prometheus' own samples) to
the moment the double stored the Service selector back on the old slot. Goal: at most one
scrape interval + one query interval + 1 s. Flagger's default is interval x threshold =
60 s x 5.

Run: .venv/bin/python benchmarks/analysis_gate_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "module_utils"), str(REPO / "tests")]

from helpers.ansible_run import run_playbook  # noqa: E402
from helpers.bluegreen_env import NAMESPACE, BlueGreenLab  # noqa: E402
from helpers.grpc_metrics import Fleet  # noqa: E402
from helpers.prometheus_server import PrometheusServer  # noqa: E402

CANARY = "asia-southeast1"
WINDOW = "5s"


def first_bad_scrape(prom: PrometheusServer, after: float) -> float:
    """Timestamp of the first sample, after ``after``, where the new slot's errors grew."""
    found = prom.query(f'grpc_server_handled_total{{region="{CANARY}", slot="green", '
                       f'grpc_code="Unavailable"}}[10m]')
    (series,) = found
    samples = [(float(t), float(v)) for t, v in series["values"]]
    for (_, before), (at, value) in itertools.pairwise(samples):
        if at > after and value > before:
            return at
    raise RuntimeError("no scrape with an error of the new slot")


def one_run(tmp: Path, scrape: float, interval: float) -> tuple[float, float, str]:
    with BlueGreenLab(tmp / "lab", regions=(CANARY,)) as lab, Fleet(lab) as fleet:
        prom = PrometheusServer(tmp / "prom", fleet.scrape_targets(),
                                honor_labels_targets=fleet.restart_targets(),
                                scrape_interval=f"{scrape:g}s")
        with prom:
            prom.wait_for(f'sum(rate(grpc_server_handled_total{{slot="blue"}}[{WINDOW}])) > 0')
            extra = {"tai_upgrade_versions": {"governor": "v1.1.0-errors"},
                     "tai_analysis_enabled": True,
                     "tai_analysis_prometheus": {"url": prom.url, "timeout": 2},
                     "tai_analysis_interval": interval, "tai_analysis_window": WINDOW,
                     "tai_upgrade_soak_seconds": 30}
            run = run_playbook("-i", "tests/inventories/bluegreen",
                               "playbooks/rolling-upgrade.yml", "-l", CANARY,
                               "-e", json.dumps(extra), env=lab.env(), timeout=300)
            assert run.returncode != 0, "the failing version was not rolled back"
            history = lab.doubles[CANARY].selector_history[(NAMESPACE, "governor")]
            (switched_at, _), (back_at, selector) = history[-2], history[-1]
            assert selector["slot"] == "blue"
            gate = "error-ratio" if "analysis gate error-ratio" in run.output else "other"
            decided = re.search(r"decided_at: ([0-9.]+)", run.output)
            bad = first_bad_scrape(prom, switched_at)
            verdict = float(decided.group(1)) - bad if decided else float("nan")
            return back_at - bad, verdict, gate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scrape", type=float, default=1.0, help="scrape interval, s")
    parser.add_argument("--interval", type=float, default=1.0, help="gate query interval, s")
    args = parser.parse_args()
    goal = args.scrape + args.interval + 1.0
    print(f"First bad scrape -> Service selector back on the old slot (scrape "
          f"{args.scrape:g} s, query interval {args.interval:g} s, window {WINDOW}; "
          f"goal <= {goal:g} s):")
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, verdict, gate = one_run(Path(tmp), args.scrape, args.interval)
        results.append(seconds)
        # The gate's own part (negative: the bad scrape came before the gate module had
        # started, so its first measurement failed); the rest is Ansible ending the gate
        # task and running the switch-back task.
        print(f"  run {i + 1}: {seconds:.3f} s (failed gate: {gate}; first bad scrape -> "
              f"gate verdict {verdict:.3f} s, verdict -> selector back "
              f"{seconds - verdict:.3f} s)")
    print(f"  median {statistics.median(results):.3f} s, min {min(results):.3f}, "
          f"max {max(results):.3f} (n={len(results)}); within goal: "
          f"{sum(r <= goal for r in results)}/{len(results)}")


if __name__ == "__main__":
    main()
