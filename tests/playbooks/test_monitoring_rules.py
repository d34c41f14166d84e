"""The planned rules and Alertmanager configuration, checked by Prometheus' own tools.

- ``promtool check rules`` on the ``spec`` of every PrometheusRule the plan renders, per region;
- ``promtool test rules``: for each alert, series under which it fires (with its labels and
  annotations, written here by hand) and series under which it stays silent;
- ``amtool check-config`` on the Alertmanager configuration of each region's values.
Debian's promtool (prometheus 2.42) and amtool (prometheus-alertmanager 0.25).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.platform_plan import REGIONS, render, variant

pytestmark = pytest.mark.playbook

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
REGION = "us-central1"
NS = 'namespace="tai-system"'


def rule_groups(region: str, plan: Any = None) -> dict[str, Any]:
    plan = plan or render()
    groups = [g for o in plan.manifests(region, "monitoring") if o["kind"] == "PrometheusRule"
              for g in o["spec"]["groups"]]
    assert groups
    return {"groups": groups}


def tool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("region", REGIONS)
def test_promtool_accepts_every_planned_rule(region: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule_groups(region)), encoding="utf-8")
    done = tool(PROMTOOL, "check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout + done.stderr  # lint findings included


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    groups = rule_groups(REGION)
    groups["groups"][0]["rules"][0]["expr"] = "sum(rate(grpc_server_handled_total[5m])"
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(groups), encoding="utf-8")
    done = tool(PROMTOOL, "check", "rules", str(path), cwd=tmp_path)
    assert done.returncode != 0
    assert "unclosed left parenthesis" in done.stdout + done.stderr


# ------------------------------------------------------------------------------------------
# promtool test rules: one case per alert that fires, one where it stays silent


def _series(metric: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{metric}{{{labels}}}", "values": values}


def _slot(service: str, slot: str) -> str:
    return f'{NS}, service="{service}", slot="{slot}", region="{REGION}"'


def _up_all(value: str = "1x40") -> list[dict[str, str]]:
    return [_series("up", f'{_slot(s, "blue")}, pod="{s}-blue-0"', value)
            for s in ("governor", "coordinator", "scheduler")]


def _grpc(slot_labels: str, ok: str, errors: str, *, slow: bool = False) -> list[dict[str, str]]:
    method = 'grpc_type="unary", grpc_service="tai.v1.Governor", grpc_method="Ping"'
    out = [_series("grpc_server_handled_total", f'{slot_labels}, {method}, grpc_code="OK"', ok),
           _series("grpc_server_handled_total",
                   f'{slot_labels}, {method}, grpc_code="Unavailable"', errors),
           # A caller mistake, never a server error.
           _series("grpc_server_handled_total",
                   f'{slot_labels}, {method}, grpc_code="InvalidArgument"', "0+30x40")]
    fast, slow_bucket = ("0+60x40", "0+60x40") if not slow else ("0x40", "0+60x40")
    for le, values in (("0.1", fast), ("0.5", fast), ("1", slow_bucket), ("+Inf", slow_bucket)):
        out.append(_series("grpc_server_handling_seconds_bucket",
                           f'{slot_labels}, {method}, le="{le}"', values))
    return out


def _healthy_platform() -> list[dict[str, str]]:
    return [*_up_all(),
            _series("redis_cluster_state", f'{NS}, pod="redis-0", region="{REGION}"', "1x40"),
            _series("redis_up", f'{NS}, pod="redis-0", region="{REGION}"', "1x40"),
            _series("vault_core_unsealed", f'namespace="vault", pod="vault-0", region="{REGION}"',
                    "1x40")]


def _alert(labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {"exp_labels": labels, "exp_annotations": {"summary": summary,
                                                       "description": description}}


ERROR_CODES = "Unknown, DeadlineExceeded, ResourceExhausted, Unimplemented, Internal, " \
              "Unavailable, DataLoss"
SLOT_LABELS = {"namespace": "tai-system", "service": "governor", "slot": "blue",
               "region": REGION}


def rule_tests() -> list[dict[str, Any]]:
    green = _slot("governor", "green")
    ksm = (f'{NS}, service="governor", label_app="governor", label_slot="green", '
           f'region="{REGION}", job="kube-state-metrics"')
    return [
        {   # Everything healthy: no TAI alert at any time.
            "name": "healthy", "interval": "30s",
            "input_series": [*_healthy_platform(), *_grpc(_slot("governor", "blue"),
                                                          "0+60x40", "0x40")],
            "alert_rule_test": [{"eval_time": "15m", "alertname": a, "exp_alerts": []}
                                for a in ("TaiServiceDown", "TaiServiceAbsent",
                                          "TaiGrpcErrorRatioHigh", "TaiGrpcLatencyHigh",
                                          "TaiRedisClusterNotOk", "TaiRedisDown",
                                          "TaiRedisMetricsAbsent", "TaiVaultSealed",
                                          "TaiVaultMetricsAbsent")],
        },
        {   # The Service selects green, whose pods are not up; blue's are.
            "name": "service down", "interval": "30s",
            "input_series": [*_healthy_platform(), _series("kube_service_labels", ksm, "1x40"),
                             _series("up", f'{green}, pod="governor-green-0"', "0x40")],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "TaiServiceDown", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "TaiServiceDown", "exp_alerts": [_alert(
                    {"namespace": "tai-system", "service": "governor", "slot": "green",
                     "region": REGION, "severity": "critical"},
                    "governor is down in us-central1: no pod of its active slot green answers.",
                    "The Service tai-system/governor selects slot green, and no target of that "
                    "slot has been up for 2 minutes.")]},
            ],
        },
        {   # The same Service, and green is up: silent.
            "name": "service up on its active slot", "interval": "30s",
            "input_series": [*_healthy_platform(), _series("kube_service_labels", ksm, "1x40"),
                             _series("up", f'{green}, pod="governor-green-0"', "1x40")],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "TaiServiceDown", "exp_alerts": []}],
        },
        {   # No scheduler target at all.
            "name": "service absent", "interval": "30s",
            "input_series": [s for s in _healthy_platform() if "scheduler" not in s["series"]],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "TaiServiceAbsent", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "TaiServiceAbsent", "exp_alerts": [_alert(
                    {"namespace": "tai-system", "service": "scheduler", "severity": "critical"},
                    "scheduler has no scrape target in us-central1.",
                    "Prometheus has found no scheduler pod in tai-system for 5 minutes: the "
                    "Deployments are gone or the ServiceMonitor no longer selects them.")]},
            ],
        },
        {   # 2 RPC/s OK, 0.4/s Unavailable (and 1/s InvalidArgument, not an error):
            # 0.4 / 3.4 = 11.76 % for more than 5 minutes.
            "name": "error ratio high", "interval": "30s",
            "input_series": [*_healthy_platform(), *_grpc(_slot("governor", "blue"),
                                                          "0+60x40", "0+12x40")],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "TaiGrpcErrorRatioHigh", "exp_alerts": []},
                {"eval_time": "12m", "alertname": "TaiGrpcErrorRatioHigh", "exp_alerts": [
                    _alert({**SLOT_LABELS, "severity": "critical"},
                           "governor (blue) in us-central1 fails 11.76% of its RPCs.",
                           f"Share of RPCs that finished with grpc_code {ERROR_CODES} over 5 "
                           "minutes is above 5.0 %. gRPC errors travel in HTTP 200 responses: "
                           "look at grpc_server_handled_total by grpc_code.")]},
            ],
        },
        {   # Only caller mistakes besides OK: silent.
            "name": "caller mistakes only", "interval": "30s",
            "input_series": [*_healthy_platform(), *_grpc(_slot("governor", "blue"),
                                                          "0+60x40", "0x40")],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "TaiGrpcErrorRatioHigh", "exp_alerts": []}],
        },
        {   # Every RPC between 0.5 and 1 s: p99 = 0.5 + 0.5 * 0.99 = 0.995 s.
            "name": "latency high", "interval": "30s",
            "input_series": [*_healthy_platform(), *_grpc(_slot("governor", "blue"),
                                                          "0+60x40", "0x40", slow=True)],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "TaiGrpcLatencyHigh", "exp_alerts": []},
                {"eval_time": "17m", "alertname": "TaiGrpcLatencyHigh", "exp_alerts": [
                    _alert({**SLOT_LABELS, "severity": "warning"},
                           "p99 latency of governor (blue) in us-central1 is 995ms.",
                           "The 99th percentile of unary RPC handling time has been above "
                           "0.5 s for 10 minutes.")]},
            ],
        },
        {   # Redis: cluster not ok, then the exporter cannot reach its server.
            "name": "redis", "interval": "30s",
            "input_series": [
                *_up_all(), _series("vault_core_unsealed",
                                    f'namespace="vault", pod="vault-0", region="{REGION}"',
                                    "1x40"),
                _series("redis_cluster_state", f'{NS}, pod="redis-1", region="{REGION}"',
                        "0x40"),
                _series("redis_up", f'{NS}, pod="redis-1", region="{REGION}"', "0x40")],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "TaiRedisClusterNotOk", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "TaiRedisClusterNotOk", "exp_alerts": [_alert(
                    {"namespace": "tai-system", "pod": "redis-1", "region": REGION,
                     "severity": "critical"},
                    "Redis node redis-1 in us-central1 reports cluster_state other than ok.",
                    "A Redis cluster that is not ok refuses writes to some or all slots (lost "
                    "quorum, uncovered slots or a node that left).")]},
                {"eval_time": "3m", "alertname": "TaiRedisDown", "exp_alerts": [_alert(
                    {"namespace": "tai-system", "pod": "redis-1", "region": REGION,
                     "severity": "critical"},
                    "redis_exporter of redis-1 in us-central1 cannot reach its Redis.",
                    "The exporter sidecar answers but its Redis server does not.")]},
                {"eval_time": "15m", "alertname": "TaiRedisMetricsAbsent", "exp_alerts": []},
            ],
        },
        {   # Vault sealed; no Redis metrics at all.
            "name": "vault sealed, redis metrics absent", "interval": "30s",
            "input_series": [*_up_all(), _series(
                "vault_core_unsealed", f'namespace="vault", pod="vault-1", region="{REGION}"',
                "1 1 0x40")],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "TaiVaultSealed", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "TaiVaultSealed", "exp_alerts": [_alert(
                    {"namespace": "vault", "pod": "vault-1", "region": REGION,
                     "severity": "critical"},
                    "Vault pod vault-1 in us-central1 is sealed.",
                    "A sealed Vault serves no secret: TAI pods that start now cannot get their "
                    "credentials. Unseal it.")]},
                {"eval_time": "9m", "alertname": "TaiRedisMetricsAbsent", "exp_alerts": []},
                {"eval_time": "11m", "alertname": "TaiRedisMetricsAbsent", "exp_alerts": [
                    _alert({"namespace": "tai-system", "severity": "warning"},
                           "No Redis cluster metrics in us-central1.",
                           "Prometheus has no redis_cluster_state series from tai-system: the "
                           "redis_exporter sidecars or their ServiceMonitor are missing.")]},
                {"eval_time": "15m", "alertname": "TaiVaultMetricsAbsent", "exp_alerts": []},
            ],
        },
        {   # No Vault telemetry at all.
            "name": "vault metrics absent", "interval": "30s",
            "input_series": [s for s in _healthy_platform()
                             if "vault_core_unsealed" not in s["series"]],
            "alert_rule_test": [
                {"eval_time": "11m", "alertname": "TaiVaultMetricsAbsent", "exp_alerts": [
                    _alert({"namespace": "vault", "severity": "warning"},
                           "No Vault telemetry in us-central1.",
                           "Prometheus has no vault_core_unsealed series from vault: Vault is "
                           "down or its ServiceMonitor is missing.")]},
                {"eval_time": "11m", "alertname": "TaiVaultSealed", "exp_alerts": []},
            ],
        },
    ]


def test_every_alert_fires_and_stays_silent_under_promtool(tmp_path: Path) -> None:
    groups = rule_groups(REGION)
    alerts = {r["alert"] for g in groups["groups"] for r in g["rules"] if "alert" in r}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(groups), encoding="utf-8")
    cases = rule_tests()
    fired = {t["alertname"] for c in cases for t in c["alert_rule_test"] if t["exp_alerts"]}
    silent = {t["alertname"] for c in cases for t in c["alert_rule_test"] if not t["exp_alerts"]}
    assert fired == alerts and silent == alerts  # every alert, both ways
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yml"], "evaluation_interval": "30s", "tests": cases},
        sort_keys=False), encoding="utf-8")
    done = tool(PROMTOOL, "test", "rules", "tests.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule_groups(REGION)), encoding="utf-8")
    (case,) = [c for c in rule_tests() if c["name"] == "healthy"]
    case["alert_rule_test"] = [{"eval_time": "15m", "alertname": "TaiServiceAbsent",
                                "exp_alerts": [{"exp_labels": {"service": "governor"}}]}]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yml"], "evaluation_interval": "30s", "tests": [case]}),
        encoding="utf-8")
    done = tool(PROMTOOL, "test", "rules", "tests.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "TaiServiceAbsent" in done.stdout + done.stderr


# ------------------------------------------------------------------------------------------
# amtool


@pytest.mark.parametrize("region", REGIONS)
def test_amtool_accepts_the_planned_alertmanager_configuration(region: str,
                                                               tmp_path: Path) -> None:
    for name, plan in (("default", render()), ("variant", variant())):
        config = plan.values(region, "monitoring", "kube-prometheus-stack")["alertmanager"][
            "config"]
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        done = tool(AMTOOL, "check-config", str(path), cwd=tmp_path)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        assert "SUCCESS" in done.stdout


def test_amtool_refuses_a_route_to_an_unknown_receiver(tmp_path: Path) -> None:
    config = render().values(REGION, "monitoring", "kube-prometheus-stack")["alertmanager"][
        "config"]
    config["route"]["routes"][0]["receiver"] = "nobody"
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = tool(AMTOOL, "check-config", str(path), cwd=tmp_path)
    assert done.returncode != 0
    assert 'undefined receiver "nobody"' in done.stdout + done.stderr
