"""monitoring role: kube-prometheus-stack values, TAI rules, dashboard, Alertmanager routes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from helpers.platform_plan import REGIONS, contract, host_failure, render, variant
from helpers.platform_promql import contract_violations, selectors

pytestmark = pytest.mark.playbook

RELEASE = "kube-prometheus-stack"
DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
SEVERITIES = {"critical", "warning", "info"}
ERROR_CODES = ("Unknown|DeadlineExceeded|ResourceExhausted|Unimplemented|Internal|Unavailable|"
               "DataLoss")


def objects(region: str) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render().manifests(region, "monitoring")}


def rules(region: str) -> list[dict[str, Any]]:
    rule = objects(region)["PrometheusRule"]
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def alerts(region: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rules(region):
        if "alert" in r:
            out.setdefault(r["alert"], []).append(r)
    return out


def dashboard(region: str) -> dict[str, Any]:
    cm = objects(region)["ConfigMap"]
    data = json.loads(cm["data"]["tai-overview.json"])
    assert isinstance(data, dict)
    return data


def dashboard_queries(region: str) -> dict[str, str]:
    dash = dashboard(region)
    out: dict[str, str] = {}
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out[f"variable {var['name']}"] = query
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_stack_components_are_on_and_pinned(region: str) -> None:
    plan = render()
    spec = plan.release(region, "monitoring", RELEASE)
    assert (spec["chart"], spec["namespace"]) == (RELEASE, "monitoring")
    values = plan.values(region, "monitoring", RELEASE)
    for part in ("prometheus", "alertmanager", "grafana", "kubeStateMetrics", "nodeExporter"):
        assert values[part]["enabled"] is True, part
    # GKE manages the control plane: its components are not scraped.
    for part in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[part]["enabled"] is False, part
    assert values["kube-state-metrics"]["metricLabelsAllowlist"] == ["services=[app,slot]"]
    assert values["grafana"]["adminPassword"] == ""
    assert values["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    assert values["grafana"]["sidecar"]["dashboards"]["labelValue"] == "1"


@pytest.mark.parametrize("region", REGIONS)
def test_prometheus_labels_every_series_with_its_region(region: str) -> None:
    spec = render().values(region, "monitoring", RELEASE)["prometheus"]["prometheusSpec"]
    assert spec["externalLabels"] == {"region": region}
    (scrape_class,) = spec["scrapeClasses"]
    assert scrape_class["default"] is True
    assert scrape_class["relabelings"] == [
        {"action": "replace", "targetLabel": "region", "replacement": region}]
    # The chart's ServiceMonitors and this role's rules are selected whatever their labels.
    for key in ("serviceMonitorSelectorNilUsesHelmValues", "ruleSelectorNilUsesHelmValues",
                "podMonitorSelectorNilUsesHelmValues"):
        assert spec[key] is False
    assert spec["replicas"] == 2
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"] == {
        "storage": "50Gi"}


def test_prometheus_rule_is_structurally_valid() -> None:
    for region in REGIONS:
        rule = objects(region)["PrometheusRule"]
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule["metadata"]["namespace"] == "monitoring"
        assert rule["metadata"]["labels"]["release"] == RELEASE
        names = [g["name"] for g in rule["spec"]["groups"]]
        assert len(names) == len(set(names))
        for group in rule["spec"]["groups"]:
            assert group["rules"], group["name"]
            for r in group["rules"]:
                assert ("alert" in r) != ("record" in r), r
                assert isinstance(r["expr"], str) and r["expr"].strip()
                assert selectors(r["expr"])
                if "record" in r:
                    assert set(r) == {"record", "expr"}
                    assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", r["record"])
                else:
                    assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}
                    assert DURATION.match(r["for"]), r["for"]
                    assert r["labels"]["severity"] in SEVERITIES
                    assert {"summary", "description"} <= set(r["annotations"])


def test_alerts_cover_services_grpc_redis_and_vault() -> None:
    found = alerts("europe-west1")
    assert set(found) == {
        "TaiServiceDown", "TaiServiceAbsent", "TaiGrpcErrorRatioHigh", "TaiGrpcLatencyHigh",
        "TaiRedisClusterNotOk", "TaiRedisDown", "TaiRedisMetricsAbsent", "TaiVaultSealed",
        "TaiVaultMetricsAbsent"}
    down = found["TaiServiceDown"][0]["expr"]
    assert "kube_service_labels" in down and "label_slot" in down and "up{" in down
    absent = sorted(r["expr"] for r in found["TaiServiceAbsent"])
    assert absent == [f'absent(up{{namespace="tai-system", service="{s}"}})'
                      for s in ("coordinator", "governor", "scheduler")]
    assert found["TaiRedisClusterNotOk"][0]["expr"] == (
        'redis_cluster_state{namespace="tai-system"} != 1')
    assert found["TaiVaultSealed"][0]["expr"] == 'vault_core_unsealed{namespace="vault"} == 0'
    assert found["TaiVaultSealed"][0]["labels"]["severity"] == "critical"


def test_error_ratio_reads_grpc_codes_not_http_status() -> None:
    recorded = {r["record"]: r["expr"] for r in rules("us-central1") if "record" in r}
    errors = recorded["tai_service:grpc_server_errors:rate5m"]
    assert f'grpc_code=~"{ERROR_CODES}"' in errors
    for client_code in ("OK", "NotFound", "InvalidArgument", "Canceled", "PermissionDenied"):
        assert client_code not in ERROR_CODES.split("|")
    assert "status" not in errors and "http" not in errors.lower()
    assert recorded["tai_service:grpc_server_error_ratio:rate5m"] == (
        "tai_service:grpc_server_errors:rate5m / tai_service:grpc_server_handled:rate5m")
    (alert,) = alerts("us-central1")["TaiGrpcErrorRatioHigh"]
    assert alert["expr"].startswith("tai_service:grpc_server_error_ratio:rate5m > 0.05")
    assert "tai_service:grpc_server_handled:rate5m > 0.1" in alert["expr"]
    p99 = recorded["tai_service:grpc_server_handling_seconds:p99_rate5m"]
    assert p99.startswith("histogram_quantile(0.99, ")
    assert 'grpc_server_handling_seconds_bucket{namespace="tai-system", grpc_type="unary"}' in p99
    assert "le)" in p99


def test_dashboard_configmap_is_loaded_by_the_grafana_sidecar() -> None:
    for region in REGIONS:
        cm = objects(region)["ConfigMap"]
        assert cm["metadata"]["name"] == "grafana-dashboard-tai-overview"
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = dashboard("europe-west1")
    assert dash["uid"] == "tai-overview"
    titles = {p["title"] for p in dash["panels"]}
    assert {"Request rate by service and region", "Error ratio by service and region",
            "p99 latency by service and region", "Active slot"} <= titles
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "region", "service"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"]
        for target in panel.get("targets", []):
            if "by (" in target["expr"] and panel["title"].endswith("by service and region"):
                assert "service, region" in target["expr"], panel["title"]
    (active,) = [p for p in dash["panels"] if p["title"] == "Active slot"]
    assert "kube_service_labels" in active["targets"][0]["expr"]
    assert "label_slot" in active["targets"][0]["expr"]


def _contract_exprs(region: str) -> tuple[dict[str, str], set[str]]:
    exprs = dashboard_queries(region)
    recorded: set[str] = set()
    for r in rules(region):
        if "record" in r:
            recorded.add(r["record"])
            exprs[f"record {r['record']}"] = r["expr"]
        else:
            exprs[f"alert {r['alert']} {r['expr'][:40]}"] = r["expr"]
    for obj in variant().manifests(region, "autoscaling"):
        for trig in obj["spec"].get("triggers", []):
            if trig["type"] == "prometheus":
                exprs[f"ScaledObject {obj['metadata']['name']}"] = trig["metadata"]["query"]
    return exprs, recorded


@pytest.mark.parametrize("region", REGIONS)
def test_every_query_reads_only_metrics_and_labels_of_the_contract(region: str) -> None:
    data = contract()
    metrics = {name: m["labels"] for name, m in data["metrics"].items()}
    exprs, recorded = _contract_exprs(region)
    assert len(exprs) > 20
    assert any(k.startswith("ScaledObject") for k in exprs)
    assert contract_violations(exprs, metrics, set(data["target_labels"]), recorded) == []


def test_contract_check_catches_unknown_metrics_and_labels() -> None:
    data = contract()
    metrics = {name: m["labels"] for name, m in data["metrics"].items()}
    exprs = {
        "typo": 'sum(rate(grpc_server_handeld_total{namespace="tai-system"}[5m]))',
        "http status": 'rate(grpc_server_handled_total{status="500"}[5m])',
        "ok": 'sum by (service) (rate(grpc_server_handled_total{grpc_code!="OK"}[5m]))',
    }
    problems = contract_violations(exprs, metrics, set(data["target_labels"]), set())
    assert problems == [
        "typo: metric grpc_server_handeld_total is not in the metrics contract",
        "http status: grpc_server_handled_total has no label status",
    ]


def test_alertmanager_routes_and_receivers_default() -> None:
    values = render().values("europe-west1", "monitoring", RELEASE)["alertmanager"]
    config = values["config"]
    route = config["route"]
    assert route["receiver"] == "null"
    assert "region" in route["group_by"]
    assert [r["receiver"] for r in route["routes"]] == ["null", "tai-pager", "tai-oncall"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {"null", "tai-oncall", "tai-pager"}
    # Credentials are read from the mounted Secret, never written into values.
    assert values["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    slack = receivers["tai-oncall"]["slack_configs"][0]
    assert slack["api_url_file"] == (
        "/etc/alertmanager/secrets/alertmanager-receivers/slack-webhook-url")
    assert "api_url" not in slack
    assert "routing_key" not in receivers["tai-pager"]["pagerduty_configs"][0]


def test_alertmanager_routes_are_configurable_per_region() -> None:
    plan = variant()
    asia = plan.values("asia-southeast1", "monitoring", RELEASE)["alertmanager"]["config"]
    europe = plan.values("europe-west1", "monitoring", RELEASE)["alertmanager"]["config"]
    assert asia["route"]["routes"][0] == {"receiver": "tai-oncall-apac",
                                          "matchers": ['severity = "critical"']}
    assert [r["receiver"] for r in asia["route"]["routes"][1:]] == [
        "null", "tai-pager", "tai-oncall"]
    assert "tai-oncall-apac" in {r["name"] for r in asia["receivers"]}
    assert europe == render().values("europe-west1", "monitoring", RELEASE)[
        "alertmanager"]["config"]


BAD: dict[str, dict[str, Any]] = {
    "europe-west1": {"monitoring_alertmanager_routes": [
        {"receiver": "tai-oncall-emea", "matchers": ['team = "tai"']}]},
    "us-central1": {"monitoring_grpc_error_codes": ["Internal", "ServerError"],
                    "monitoring_grpc_error_ratio_threshold": 5},
    "asia-southeast1": {"monitoring_alertmanager_default_receiver": "nobody"},
}


def test_bad_routing_and_thresholds_are_refused_with_one_sentence() -> None:
    plan = render(("monitoring",), host_vars=BAD)
    assert plan.run.returncode != 0
    assert host_failure(plan.run, "europe-west1") == (
        "Alertmanager route[0] in europe-west1 sends to receiver tai-oncall-emea, which is not "
        "defined (known: null, tai-oncall, tai-pager); add it to "
        "monitoring_alertmanager_receivers.")
    us = host_failure(plan.run, "us-central1")
    assert ("monitoring_grpc_error_ratio_threshold is 5; it must be a ratio between 0 and 1 "
            "(0.05 = 5 %).") in us
    assert "monitoring_grpc_error_codes lists ServerError, which is not a gRPC status code" in us
    assert host_failure(plan.run, "asia-southeast1").startswith(
        "monitoring_alertmanager_default_receiver is nobody, which is not a receiver")
    assert "Traceback" not in plan.run.output
