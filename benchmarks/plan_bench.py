#!/usr/bin/env python3
"""Wall time of the plan (1 region, 3 regions) against its floor, printed as a table.

The floor is the irreducible work of a plan done without Ansible: `helm template` of the TAI
chart per region, kubernetes-validate (strict) of every manifest the plan contains, and writing
every artifact. The ratio plan/floor is Ansible's overhead (process start, templating, one
module process per task).

    python benchmarks/plan_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "module_utils"))

from tai_deploy.bundle import collect, plan, write  # noqa: E402
from tai_deploy.manifests import validate_objects  # noqa: E402

REGIONS = ["us-central1", "europe-west1", "asia-southeast1"]
BIN = Path(sys.executable).parent
K8S = "1.34"


def ansible_plan(limit: str, build_root: Path) -> float:
    env = dict(os.environ, TAI_BUILD_ROOT=str(build_root), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-l", limit], cwd=REPO,
                          env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"plan of {limit} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def floor(regions: list[str], reference: Path, out: Path) -> float:
    """helm template + validation + writes, for the same regions, without Ansible."""
    start = time.perf_counter()
    for region in regions:
        args = [str(BIN / "helm"), "template", "tai", str(REPO / "charts" / "tai-chart"),
                "--namespace", "tai-system", "--kube-version", K8S, "--set", f"region={region}"]
        values = REPO / "charts" / "tai-chart" / f"values-{region}.yaml"
        if values.exists():
            args += ["-f", str(values)]
        rendered = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        wanted, objects = collect(manifests=rendered)
        # The other roles' manifests of the same plan, read back from the reference bundle.
        for path in sorted((reference / region).rglob("manifests/**/*.yaml")):
            if "tai-services" in path.parts:
                continue
            more, objs = collect(manifests=path.read_text(), manifests_dir=f"m/{path.stem}")
            wanted.update(more)
            objects += objs
        report = validate_objects(objects, K8S)
        if not report.ok:
            raise SystemExit(f"floor validation failed: {report.problems[:3]}")
        write(plan(out / region, wanted))
    return time.perf_counter() - start


def best(fn: Callable[[], float], repeat: int) -> tuple[float, float]:
    times = [fn() for _ in range(repeat)]
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tai-bench-") as tmp:
        root = Path(tmp)
        reference = root / "reference"
        ansible_plan("all", reference)  # warms caches, gives the floor its manifests

        def cold(limit: str) -> Callable[[], float]:
            def run() -> float:
                target = root / "cold"
                shutil.rmtree(target, ignore_errors=True)
                return ansible_plan(limit, target)
            return run

        rows = []
        one_cold = best(cold("europe-west1"), args.repeat)
        one_warm = best(lambda: ansible_plan("europe-west1", reference), args.repeat)
        all_cold = best(cold("all"), args.repeat)
        all_warm = best(lambda: ansible_plan("all", reference), args.repeat)

        def floor_run(regions: list[str]) -> Callable[[], float]:
            def run() -> float:
                target = root / "floor"
                shutil.rmtree(target, ignore_errors=True)
                return floor(regions, reference, target)
            return run

        floor_one = best(floor_run(["europe-west1"]), args.repeat)
        floor_all = best(floor_run(REGIONS), args.repeat)
        rows = [
            ("plan 1 region (empty build/)", one_cold, floor_one),
            ("plan 1 region (rerun, changed=0)", one_warm, floor_one),
            ("plan 3 regions (empty build/)", all_cold, floor_all),
            ("plan 3 regions (rerun, changed=0)", all_warm, floor_all),
        ]
        print(f"cores: {os.cpu_count()}, repeats: {args.repeat} (best / median, seconds)")
        print(f"{'case':38} {'ansible':>15} {'floor':>15} {'ratio':>7}")
        for name, (a_best, a_med), (f_best, f_med) in rows:
            print(f"{name:38} {a_best:6.2f} / {a_med:6.2f} {f_best:6.2f} / {f_med:6.2f} "
                  f"{a_best / f_best:6.1f}x")


if __name__ == "__main__":
    main()
