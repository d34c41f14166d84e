"""Analysis gates end to end: playbooks/rolling-upgrade.yml judged by a real Prometheus.

Each region is a Kubernetes API TEST DOUBLE (helpers/bluegreen_env.py). Next to it runs, per
region and slot, a real gRPC server exporting go-grpc-prometheus' metrics through a grpcio
interceptor (helpers/grpc_metrics.py); loopback clients call the slot the double's Service
selects (and, now and then, the preview slot). Debian's Prometheus scrapes them every second
with the labels production's relabelling writes (namespace, service, slot, region); the
gates' Prometheus URL of every region points at it, and each query selects its region.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers.ansible_run import PlaybookRun, run_playbook
from helpers.bluegreen_env import NAMESPACE, BlueGreenLab
from helpers.grpc_metrics import Fleet
from helpers.grpc_servers import free_port
from helpers.prometheus_server import PrometheusServer

pytestmark = pytest.mark.playbook

INVENTORY = "tests/inventories/bluegreen"
CANARY, SECOND, LAST = "asia-southeast1", "europe-west1", "us-central1"
WINDOW = "5s"


class Rig:
    def __init__(self, lab: BlueGreenLab, fleet: Fleet, prometheus: PrometheusServer,
                 tmp: Path) -> None:
        self.lab, self.fleet, self.prometheus, self.tmp = lab, fleet, prometheus, tmp

    def settings(self, **extra: Any) -> Path:
        data = {
            "tai_analysis_enabled": True,
            "tai_analysis_prometheus": {"url": self.prometheus.url, "timeout": 2},
            "tai_analysis_interval": 1, "tai_analysis_window": WINDOW,
            "tai_upgrade_soak_seconds": 4,
            **extra,
        }
        path = self.tmp / f"analysis-{len(list(self.tmp.glob('analysis-*')))}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    def upgrade(self, tag: str, *args: str, **extra: Any) -> PlaybookRun:
        return run_playbook(
            "-i", INVENTORY, "playbooks/rolling-upgrade.yml",
            "-e", json.dumps({"tai_upgrade_versions": {"governor": tag}}),
            "-e", f"@{self.settings(**extra)}", *args, env=self.lab.env(), timeout=300)

    def slots(self, region: str) -> list[str]:
        return [s["slot"] for _, s in self.lab.doubles[region].selector_history[
            (NAMESPACE, "governor")]]


@dataclass
class Telemetry:
    """What the module's tests share: the slot servers with their traffic, and Prometheus."""

    between_tests: BlueGreenLab
    fleet: Fleet
    prometheus: PrometheusServer


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Telemetry]:
    # One fleet and one Prometheus for every test: each test brings its own lab, which the
    # fleet's traffic and restarts exporters follow; between tests they follow a lab where
    # every region runs the old version, as at the start of a test.
    root = tmp_path_factory.mktemp("analysis-gates")
    with (BlueGreenLab(root / "between-tests") as idle,
          Fleet(idle, max_seconds=3600, max_calls=10_000_000) as fleet,
          PrometheusServer(root / "prometheus", fleet.scrape_targets(),
                           honor_labels_targets=fleet.restart_targets()) as prom):
        yield Telemetry(idle, fleet, prom)


@pytest.fixture
def rig(telemetry: Telemetry, tmp_path: Path) -> Iterator[Rig]:
    fleet, prom = telemetry.fleet, telemetry.prometheus
    with BlueGreenLab(tmp_path / "lab") as lab:
        fleet.lab, fleet.spike = lab, 0.0
        try:
            # Every region's old version has traffic in the window before the run starts, and
            # nothing else does: no new slot serves, nothing fails (the window holds nothing
            # of an earlier test).
            for region in (CANARY, SECOND, LAST):
                prom.wait_for(f'sum(rate(grpc_server_handled_total{{region="{region}", '
                              f'slot="blue"}}[{WINDOW}])) > 0')
            prom.wait_for_none(f'sum(rate(grpc_server_handled_total{{slot="green"}}'
                               f'[{WINDOW}])) > 0')
            prom.wait_for_none(f'sum(rate(grpc_server_handled_total{{grpc_code!="OK"}}'
                               f'[{WINDOW}])) > 0')
            yield Rig(lab, fleet, prom, tmp_path)
        finally:
            fleet.lab, fleet.spike = telemetry.between_tests, 0.0


def said(run: PlaybookRun) -> str:
    return " ".join(run.output.split())


def test_a_good_version_passes_every_gate_in_every_region(rig: Rig) -> None:
    run = rig.upgrade("v1.1.0", "-e", "tai_analysis_preswitch=true",
                      "-e", "tai_analysis_preswitch_seconds=1")
    assert run.returncode == 0, run.output[-4000:]
    for region in (CANARY, SECOND, LAST):
        assert rig.slots(region) == ["blue", "green"]
    out = said(run)
    assert "Judge the preview slots by their own metrics before the switch" in out
    assert "Judge the new slots by their metrics during the soak window" in out
    # The soak lasts one window: the gates judged it, then the active path is checked once
    # (it was a second window of health checks, one every 0.2 s, before).
    for region in (CANARY, SECOND, LAST):
        double = rig.lab.doubles[region]
        switched = double.selector_history[(NAMESPACE, "governor")][-1][0]
        after = [at for at, _ in double.health_answers(NAMESPACE, "governor-green")
                 if at >= switched]
        assert len(after) == 1, (region, after)


def test_errors_after_the_switch_switch_back_with_query_value_and_limit(rig: Rig) -> None:
    run = rig.upgrade("v1.1.0-errors", "-l", CANARY, "-e", "tai_analysis_preswitch=true",
                      "-e", "tai_analysis_preswitch_seconds=1",
                      tai_analysis_baseline_regions=[SECOND, LAST])
    assert run.returncode != 0
    out = said(run)
    # Before the switch the preview slot serves only smoke traffic, which succeeds.
    assert "(Judge the new slots by their metrics during the soak window)" in out
    assert ("analysis gate error-ratio for governor (slot green) in asia-southeast1: value is"
            in out)
    assert "above the limit 0.05 (threshold 0.05, baseline" in out
    assert "(median of europe-west1, us-central1) x 1.5 + 0.01" in out
    assert ('query: sum(rate(grpc_server_handled_total{namespace="tai-system", '
            'service="governor", slot="green", region="asia-southeast1", grpc_code=~"Unknown|'
            'DeadlineExceeded|ResourceExhausted|Unimplemented|Internal|Unavailable|DataLoss"}'
            '[5s]))') in out
    assert "Switched back: governor" in out
    assert rig.slots(CANARY) == ["blue", "green", "blue"]
    assert rig.lab.replicas(CANARY, "governor-blue") == 3
    assert not rig.lab.writes(SECOND) and not rig.lab.writes(LAST)


def test_a_slower_version_fails_the_p99_latency_gate_per_method(rig: Rig) -> None:
    run = rig.upgrade("v1.1.0-latency", "-l", CANARY,
                      tai_analysis_baseline_regions=[SECOND, LAST])
    assert run.returncode != 0
    out = said(run)
    assert "analysis gate latency-p99 for governor (slot green) in asia-southeast1" in out
    assert '{grpc_method="Ping"} is ' in out
    assert "histogram_quantile(0.99, sum by (grpc_method, le)" in out
    assert rig.slots(CANARY) == ["blue", "green", "blue"]


def test_a_version_without_traffic_fails_for_lack_of_data(rig: Rig) -> None:
    run = rig.upgrade("v1.1.0-silent", "-l", CANARY)
    assert run.returncode != 0
    out = said(run)
    assert ("analysis gate error-ratio for governor (slot green) in asia-southeast1: no data "
            "(no series, or no traffic in the last 5s), which counts as a failure") in out
    assert rig.slots(CANARY) == ["blue", "green", "blue"]


def test_a_global_error_spike_passes_against_the_baseline_but_not_without(rig: Rig) -> None:
    rig.fleet.spike = 0.25  # every slot of every region fails a quarter of its RPCs
    rig.prometheus.wait_for(f'sum(rate(grpc_server_handled_total{{region="{SECOND}", '
                            f'grpc_code="Unavailable"}}[{WINDOW}])) > 0')
    alone = rig.upgrade("v1.1.0", "-l", CANARY, tai_analysis_baseline_regions=[])
    assert alone.returncode != 0
    assert "analysis gate error-ratio for governor (slot green)" in said(alone)
    assert "(threshold 0.05); query:" in said(alone)  # no baseline: the threshold alone
    assert rig.slots(CANARY) == ["blue", "green", "blue"]
    # The failed attempt above marked v1.1.0 aborted: trying it again is explicit.
    run = rig.upgrade("v1.1.0", "-l", CANARY, "-e", "tai_upgrade_retry_aborted=true",
                      tai_analysis_baseline_regions=[SECOND, LAST])
    assert run.returncode == 0, run.output[-4000:]
    assert rig.slots(CANARY) == ["blue", "green", "blue", "green"]


def test_emergency_fast_path_and_rollback_never_wait_on_analysis(rig: Rig) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run = rig.upgrade("v1.1.0", "-l", CANARY, "-e", "tai_upgrade_skip_analysis=true",
                      tai_analysis_prometheus={"url": dead})
    assert run.returncode == 0, run.output[-4000:]
    back = run_playbook("-i", INVENTORY, "playbooks/rollback.yml", "-l", CANARY,
                        "-e", f"@{rig.settings(tai_analysis_prometheus={'url': dead})}",
                        env=rig.lab.env())
    assert back.returncode == 0, back.output[-4000:]
    assert rig.slots(CANARY) == ["blue", "green", "blue"]
    # Without the fast path the same unreachable Prometheus stops the upgrade (errors are
    # not a pass).
    # The rollback above marked v1.1.0 aborted: trying it again is explicit.
    again = rig.upgrade("v1.1.0", "-l", CANARY, "-e", "tai_upgrade_retry_aborted=true",
                        tai_analysis_prometheus={"url": dead})
    assert again.returncode != 0
    assert "is unreachable: ConnectionError" in said(again)
    assert "(3 consecutive error(s), limit 2)" in said(again)


def test_the_manual_gate_stops_after_a_region_without_an_approval(rig: Rig) -> None:
    run = rig.upgrade("v1.1.0", "-l", f"{CANARY},{SECOND}", tai_upgrade_manual_gate=True)
    assert run.returncode != 0
    out = said(run)
    assert ("asia-southeast1 is upgraded; the next region (europe-west1) was not approved "
            "(no terminal to ask on)") in out
    assert rig.slots(CANARY) == ["blue", "green"]
    assert rig.lab.replicas(CANARY, "governor-blue") == 0  # finalized, not rolled back
    assert not rig.lab.writes(SECOND)


def test_restarting_pods_of_the_new_slot_fail_the_restarts_gate(rig: Rig) -> None:
    run = rig.upgrade("v1.1.0-crashloop", "-l", CANARY)
    assert run.returncode != 0
    out = said(run)
    assert "analysis gate restarts for governor (slot green) in asia-southeast1" in out
    assert 'query: sum(kube_pod_container_status_restarts_total{namespace="tai-system", ' \
           'pod=~"governor-green-.+", region="asia-southeast1"})' in out
    assert "(threshold 0)" in out
    assert rig.slots(CANARY) == ["blue", "green", "blue"]


def test_bad_gate_settings_stop_the_run_before_anything_changes(rig: Rig) -> None:
    bad: list[dict[str, Any]] = [{"name": "error-ratio", "threshold": 0.05,
                                  "query": "sum(rate(x{${selectr}}[${window}]))",
                                  "failurelimit": 2}]
    run = rig.upgrade("v1.1.0", "-l", CANARY, tai_analysis_gates=bad,
                      tai_analysis_window="5 minutes")
    assert run.returncode != 0
    out = said(run)
    assert ("invalid analysis settings: analysis gate 'error-ratio' has unknown key(s) "
            "failurelimit") in out
    assert "Traceback" not in run.output
    assert not rig.lab.writes(CANARY)
    fixed = {k: v for k, v in bad[0].items() if k != "failurelimit"}
    run = rig.upgrade("v1.1.0", "-l", CANARY, tai_analysis_gates=[fixed],
                      tai_analysis_window="5 minutes")
    assert ("the analysis window must be a Prometheus duration such as 1m or 30s, got "
            "'5 minutes'. analysis gate 'error-ratio': the query uses unknown placeholder(s) "
            "${selectr}") in said(run)
    assert not rig.lab.writes(CANARY)
