"""Render charts/tai-chart with the project's helm, the way the tai_services role does."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tai-chart"
HELM = Path(sys.executable).parent / "helm"
CHECKOV = Path(sys.executable).parent / "checkov"
REGIONS = ("us-central1", "europe-west1", "asia-southeast1")
KUBE_VERSION = "1.34"
NAMESPACE = "tai-system"
RELEASE = "tai"


@dataclass
class Rendered:
    returncode: int
    stdout: str
    stderr: str

    @property
    def objects(self) -> list[dict[str, Any]]:
        assert self.returncode == 0, self.stderr
        return [d for d in yaml.safe_load_all(self.stdout) if d]


def helm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def render(region: str | None = None, values: Mapping[str, Any] | None = None,
           *, set_args: tuple[str, ...] = ()) -> Rendered:
    """`helm template` of the chart: region file (when given), then `values` on top."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", KUBE_VERSION]
    if region:
        args += ["-f", str(CHART / f"values-{region}.yaml")]
    with tempfile.TemporaryDirectory() as tmp:
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(json.dumps(dict(values)))
            args += ["-f", str(path)]
        for item in set_args:
            args += ["--set", item]
        proc = helm(*args)
    return Rendered(proc.returncode, proc.stdout, proc.stderr)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def write_manifests(objects: list[dict[str, Any]], folder: Path) -> None:
    """One file per object, as the plan bundle writes them (for checkov)."""
    folder.mkdir(parents=True, exist_ok=True)
    for obj in objects:
        meta = obj["metadata"]
        name = f"{meta.get('namespace', '_cluster')}-{obj['kind'].lower()}-{meta['name']}.yaml"
        (folder / name).write_text(yaml.safe_dump(obj, sort_keys=True))


def checkov(folder: Path, timeout: float = 300) -> dict[str, Any]:
    """checkov's JSON report over a folder of manifests (offline, no guideline download)."""
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(folder), "--framework", "kubernetes", "--compact",
         "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=timeout, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"checkov gave no JSON report: {proc.stderr[-2000:]}") from exc
    if isinstance(report, list):  # one entry per framework
        report = report[0]
    assert isinstance(report, dict)
    return report
