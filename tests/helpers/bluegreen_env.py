"""Blue-green test lab: three regions, each a Kubernetes API TEST DOUBLE seeded like the chart.

``BlueGreenLab`` starts one ``k8s_double.KubeApiDouble`` per region, creates in each the
objects the chart renders under the blue-green contract (Deployment ``<svc>-blue`` at
v1.0.0 with 3 replicas, Service ``<svc>`` selecting slot blue, Service ``<svc>-preview``
selecting green, which is not deployed yet) and writes, into a directory:

- ``kubeconfig``: one context per region, named like the contexts ``gcloud container
  clusters get-credentials`` creates (``gke_<project>_<region>_tai-cluster``), so the
  playbooks find them through ``tai_kube_context`` exactly as in production;
- ``endpoints.json``: per region and service, the loopback addresses of the preview and the
  active Service's gRPC port (the doubles' kube-proxy), read by tests/inventories/bluegreen.

Run as a script it serves a lab until stopped, for the molecule scenario::

    python tests/helpers/bluegreen_env.py start DIR   # returns once DIR/ready exists
    python tests/helpers/bluegreen_env.py stop DIR
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):  # run as a script: make `helpers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from helpers.k8s_double import KubeApiDouble

REGIONS = ("us-central1", "europe-west1", "asia-southeast1")
PROJECT = "tai-bluegreen-test"
NAMESPACE = "tai-system"
SERVICES = {"governor": 50051, "coordinator": 50052, "scheduler": 50053}
REPOSITORY = "gcr.io/ggen-project"
INVENTORY = Path(__file__).resolve().parents[1] / "inventories" / "bluegreen"


def context_name(region: str) -> str:
    return f"gke_{PROJECT}_{region}_tai-cluster"


def chart_objects(service: str, port: int, *, tags: dict[str, str] | None = None,
                  active: str = "blue", replicas: int = 3) -> list[dict[str, Any]]:
    """What the chart renders for one service under the blue-green contract."""
    tags = tags if tags is not None else {"blue": "v1.0.0"}
    common = {"app.kubernetes.io/name": service, "app.kubernetes.io/instance": "tai",
              "app.kubernetes.io/part-of": "tai", "app.kubernetes.io/managed-by": "Helm"}
    helm = {"meta.helm.sh/release-name": "tai", "meta.helm.sh/release-namespace": NAMESPACE}
    objects: list[dict[str, Any]] = []
    for slot, tag in tags.items():
        labels = {"app": service, "slot": slot}
        objects.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{service}-{slot}", "namespace": NAMESPACE,
                         "labels": {**common, **labels}, "annotations": dict(helm)},
            "spec": {
                "replicas": replicas if slot == active else 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**common, **labels}},
                    "spec": {
                        "serviceAccountName": service,
                        "containers": [{
                            "name": service, "image": f"{REPOSITORY}/{service}:{tag}",
                            "env": [{"name": "GRPC_MAX_CONNECTION_AGE_SECONDS", "value": "30"}],
                            "ports": [{"name": "grpc", "containerPort": port},
                                      {"name": "http-metrics", "containerPort": 8080}],
                            "readinessProbe": {"grpc": {"port": port},
                                               "periodSeconds": 5},
                        }],
                    },
                },
            },
        })
    other = "green" if active == "blue" else "blue"
    routes = [(service, active, "active")]
    if other in tags:  # like the chart: a preview Service only when the other slot is deployed
        routes.append((f"{service}-preview", other, "preview"))
    for name, slot, role in routes:
        objects.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": {**common, "app": service, "slot": slot,
                                    "tai.example.com/route": role},
                         "annotations": dict(helm)},
            "spec": {"type": "ClusterIP", "selector": {"app": service, "slot": slot},
                     "ports": [{"name": "grpc", "port": port, "targetPort": "grpc",
                                "protocol": "TCP", "appProtocol": "grpc"},
                               {"name": "http-metrics", "port": 8080,
                                "targetPort": "http-metrics", "protocol": "TCP",
                                "appProtocol": "http"}]},
        })
    return objects


class BlueGreenLab:
    """Three regions of doubles, seeded, with their kubeconfig and endpoints files."""

    def __init__(self, directory: Path, *, regions: Iterable[str] = REGIONS,
                 ready_delay: float = 0.3, replicas: int = 3) -> None:
        self.dir = Path(directory)
        self.regions = tuple(regions)
        self.doubles = {r: KubeApiDouble(name=r, ready_delay=ready_delay) for r in self.regions}
        self.seed_replicas = replicas

    def start(self) -> BlueGreenLab:
        self.dir.mkdir(parents=True, exist_ok=True)
        for double in self.doubles.values():
            double.start()
            for service, port in SERVICES.items():
                double.seed(*chart_objects(service, port, replicas=self.seed_replicas))
        self.wait_available()
        self.write_files()
        return self

    def stop(self) -> None:
        for double in self.doubles.values():
            double.stop()

    def __enter__(self) -> BlueGreenLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_available(self, timeout: float = 10.0) -> None:
        def ready() -> bool:
            for double in self.doubles.values():
                for service in SERVICES:
                    dep = double.find("Deployment", NAMESPACE, f"{service}-blue")
                    available = (dep or {}).get("status", {}).get("availableReplicas")
                    if available != self.seed_replicas:
                        return False
            return True

        next(iter(self.doubles.values())).wait_for(ready, timeout)

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def endpoints_file(self) -> Path:
        return self.dir / "endpoints.json"

    def write_files(self) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config",
            "current-context": context_name(self.regions[0]),
            "clusters": [{"name": context_name(r), "cluster": {"server": d.url}}
                         for r, d in self.doubles.items()],
            "users": [{"name": "tester", "user": {}}],
            "contexts": [{"name": context_name(r),
                          "context": {"cluster": context_name(r), "user": "tester",
                                      "namespace": NAMESPACE}} for r in self.doubles],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config), encoding="utf-8")
        endpoints = {
            region: {svc: {"active": {"address": d.endpoint(NAMESPACE, svc)},
                           "preview": {"address": d.endpoint(NAMESPACE, f"{svc}-preview")}}
                     for svc in SERVICES}
            for region, d in self.doubles.items()}
        self.endpoints_file.write_text(json.dumps(endpoints, indent=2), encoding="utf-8")

    def env(self) -> dict[str, str]:
        """Environment of an ansible-playbook run against this lab."""
        return {"KUBECONFIG": str(self.kubeconfig),
                "TAI_BLUEGREEN_ENDPOINTS": str(self.endpoints_file),
                "GRPC_VERBOSITY": "ERROR"}

    # -- inspection ----------------------------------------------------------------------

    def service(self, region: str, service: str) -> dict[str, Any]:
        return self.doubles[region].get("Service", NAMESPACE, service)

    def active_slot(self, region: str, service: str) -> str:
        return str(self.service(region, service)["spec"]["selector"]["slot"])

    def deployment(self, region: str, name: str) -> dict[str, Any] | None:
        return self.doubles[region].find("Deployment", NAMESPACE, name)

    def image(self, region: str, name: str) -> str | None:
        dep = self.deployment(region, name)
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"]) if dep else None

    def replicas(self, region: str, name: str) -> int | None:
        dep = self.deployment(region, name)
        return int(dep["spec"]["replicas"]) if dep else None

    def writes(self, region: str) -> list[Any]:
        return self.doubles[region].writes()

    def state(self) -> dict[str, Any]:
        """Per region and service: active slot, images and replicas of both slots."""
        out: dict[str, Any] = {}
        for region in self.regions:
            for svc in SERVICES:
                out.setdefault(region, {})[svc] = {
                    "active": self.active_slot(region, svc),
                    **{slot: (self.image(region, f"{svc}-{slot}"),
                              self.replicas(region, f"{svc}-{slot}"))
                       for slot in ("blue", "green")}}
        return out


# ------------------------------------------------------------------------------------------
# command line, for molecule


def _serve(directory: Path) -> None:
    lab = BlueGreenLab(directory).start()
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    (directory / "ready").write_text(str(os.getpid()), encoding="utf-8")
    while not stop:
        time.sleep(0.2)
        history = {r: {f"{ns}/{svc}": h for (ns, svc), h in d.selector_history.items()}
                   for r, d in lab.doubles.items()}
        (directory / "selector-history.json").write_text(json.dumps(history), encoding="utf-8")
    lab.stop()
    (directory / "ready").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "serve"))
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    directory: Path = args.directory.resolve()
    pid_file = directory / "lab.pid"
    if args.action == "serve":
        _serve(directory)
        return 0
    if args.action == "start":
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ready").unlink(missing_ok=True)
        with (directory / "lab.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, __file__, "serve", str(directory)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        pid_file.write_text(str(proc.pid), encoding="utf-8")
        deadline = time.time() + 20
        while not (directory / "ready").exists():
            if proc.poll() is not None or time.time() > deadline:
                print(f"the test lab did not start; see {directory / 'lab.log'}", file=sys.stderr)
                return 1
            time.sleep(0.1)
        print(json.dumps({"kubeconfig": str(directory / "kubeconfig"),
                          "endpoints": str(directory / "endpoints.json"), "pid": proc.pid}))
        return 0
    if pid_file.exists():
        pid = int(pid_file.read_text(encoding="utf-8"))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 10
        while (directory / "ready").exists() and time.time() < deadline:
            time.sleep(0.1)
        pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
