"""A real Prometheus server (Debian's /usr/bin/prometheus) on loopback, for the gate tests.

Started with its own configuration, an ephemeral port and a temporary data directory; never
the system service. ``static_configs`` give each target the labels that production's
ServiceMonitor relabelling and scrape class write (namespace, service, slot, region).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from helpers.grpc_servers import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class PrometheusServer:
    def __init__(self, directory: Path, targets: list[tuple[str, dict[str, str]]], *,
                 honor_labels_targets: list[tuple[str, dict[str, str]]] | None = None,
                 scrape_interval: str = "1s") -> None:
        self.dir = Path(directory)
        self.port = free_port()
        self.scrape_interval = scrape_interval
        self.config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                       "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {"job_name": "tai", "static_configs": [
                    {"targets": [addr], "labels": labels} for addr, labels in targets]},
            ],
        }
        if honor_labels_targets:
            self.config["scrape_configs"].append(
                {"job_name": "kube-state-metrics", "honor_labels": True, "static_configs": [
                    {"targets": [addr], "labels": labels}
                    for addr, labels in honor_labels_targets]})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> PrometheusServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        log = (self.dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited; see {self.dir / 'prometheus.log'}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError("prometheus did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = requests.get(f"{self.url}/api/v1/query", params={"query": promql},
                            timeout=5).json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(self, promql: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.query(promql)
            if found:
                return found
            time.sleep(0.2)
        raise TimeoutError(f"no result for {promql}")

    def wait_for_none(self, promql: str, timeout: float = 30.0) -> None:
        """Wait until ``promql`` returns nothing (for example: no rate above 0 any more)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.query(promql):
                return
            time.sleep(0.2)
        raise TimeoutError(f"still a result for {promql}")
