#!/usr/bin/env python3
"""Wall time of the plan (1 region, 3 regions, 30 regions) against its floor, as a table.

The floor is the irreducible work of a plan done without Ansible: `helm template` of the TAI
chart per region, kubernetes-validate (strict) of every manifest the plan contains, and writing
every artifact. The ratio plan/floor is Ansible's overhead (process start, templating, task
scheduling, and a module process for each task that needs one).

Every case runs in the same invocation, so the ratios compare runs on the same machine under
the same load. The 30-region case plans a generated inventory (30 real GCP regions, disjoint
subnets) to show how the cost grows with the number of regions.

    python benchmarks/plan_bench.py [--repeat N] [--no-30]
"""

from __future__ import annotations

import argparse
import json
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


# 30 GCP regions (name, continent of the geo record), for the generated inventory.
MANY = [
    ("us-central1", "northamerica"), ("us-east1", "northamerica"), ("us-east4", "northamerica"),
    ("us-east5", "northamerica"), ("us-south1", "northamerica"), ("us-west1", "northamerica"),
    ("us-west2", "northamerica"), ("us-west3", "northamerica"), ("us-west4", "northamerica"),
    ("northamerica-northeast1", "northamerica"), ("northamerica-northeast2", "northamerica"),
    ("southamerica-east1", "southamerica"), ("southamerica-west1", "southamerica"),
    ("europe-west1", "europe"), ("europe-west2", "europe"), ("europe-west3", "europe"),
    ("europe-west4", "europe"), ("europe-west6", "europe"), ("europe-west8", "europe"),
    ("europe-west9", "europe"), ("europe-north1", "europe"), ("europe-central2", "europe"),
    ("europe-southwest1", "europe"), ("asia-southeast1", "asia"), ("asia-southeast2", "asia"),
    ("asia-east1", "asia"), ("asia-east2", "asia"), ("asia-northeast1", "asia"),
    ("asia-northeast2", "asia"), ("asia-south1", "asia"),
]


def many_regions_inventory(folder: Path, count: int = len(MANY)) -> Path:
    """An inventory like inventories/production with ``count`` regions: the first is primary,
    the second secondary, the rest tertiary; each gets its own /20 nodes, /14 pods and /20
    services range, all disjoint."""
    regions = MANY[:count]
    hosts = {name: None for name, _ in regions}
    tiers = {"tai_primary": [regions[0][0]], "tai_secondary": [regions[1][0]],
             "tai_tertiary": [name for name, _ in regions[2:]]}
    inventory = {"all": {"children": {
        "tai_regions": {"hosts": hosts},
        **{tier: {"hosts": dict.fromkeys(names)} for tier, names in tiers.items()}}}}
    folder.mkdir(parents=True)
    (folder / "hosts.yml").write_text(json.dumps(inventory, indent=2))
    group_vars = folder / "group_vars"
    shutil.copytree(REPO / "inventories" / "production" / "group_vars", group_vars)
    (folder / "host_vars").mkdir()
    for i, (name, continent) in enumerate(regions):
        host = {
            "tai_region_continent": continent,
            "tai_region_zones": [f"{name}-{z}" for z in "abc"],
            "tai_region_dns_geo_location": name,
            "tai_region_subnet_ranges": {"nodes": f"10.{128 + i}.0.0/20",
                                         "pods": f"10.{4 * i}.0.0/14",
                                         "services": f"10.{128 + i}.16.0/20"},
        }
        (folder / "host_vars" / f"{name}.yml").write_text(json.dumps(host, indent=2))
    return folder


def ansible_plan(limit: str, build_root: Path, inventory: Path | None = None,
                 *extra: str) -> float:
    env = dict(os.environ, TAI_BUILD_ROOT=str(build_root), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    args = [str(BIN / "ansible-playbook"), "site.yml", "-l", limit, *extra]
    if inventory is not None:
        args += ["-i", str(inventory)]
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, check=False)
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
    parser.add_argument("--no-30", dest="many", action="store_false",
                        help="skip the generated 30-region inventory (its plan takes minutes)")
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

        # What Ansible costs before its first task: start, inventory, playbooks and roles
        # parsed (--list-tasks runs nothing). No plan can be faster than this plus its floor.
        load_one = best(lambda: ansible_plan("europe-west1", reference, None, "--list-tasks"),
                        args.repeat)
        floor_one = best(floor_run(["europe-west1"]), args.repeat)
        floor_all = best(floor_run(REGIONS), args.repeat)
        print(f"cores: {os.cpu_count()}, repeats: {args.repeat} (best / median, seconds)")
        print(f"{'case':42} {'ansible':>15} {'floor':>15} {'ratio':>7}")
        for name, ansible, floor_time in (
                ("ansible-playbook --list-tasks, 1 region", load_one, floor_one),
                ("plan 1 region (empty build/)", one_cold, floor_one),
                ("plan 1 region (rerun, changed=0)", one_warm, floor_one),
                ("plan 3 regions (empty build/)", all_cold, floor_all),
                ("plan 3 regions (rerun, changed=0)", all_warm, floor_all)):
            row(name, ansible, floor_time)
        if args.many:
            # Planned once: the run also gives the floor the manifests of the 30 regions.
            inventory = many_regions_inventory(root / "inventory-30")
            many_ref = root / "reference-30"
            many_plan = ansible_plan("all", many_ref, inventory)
            many_floor = floor([name for name, _ in MANY], many_ref, root / "floor-30")
            row(f"plan {len(MANY)} regions (empty build/, once)", (many_plan, many_plan),
                (many_floor, many_floor))


def row(name: str, ansible: tuple[float, float], floor_time: tuple[float, float]) -> None:
    (a_best, a_med), (f_best, f_med) = ansible, floor_time
    print(f"{name:42} {a_best:6.2f} / {a_med:6.2f} {f_best:6.2f} / {f_med:6.2f} "
          f"{a_best / f_best:6.1f}x", flush=True)

if __name__ == "__main__":
    main()
