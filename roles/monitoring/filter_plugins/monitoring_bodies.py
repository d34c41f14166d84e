# Copyright: tai-deploy contributors
"""Filters monitoring_alertmanager_config / monitoring_releases: the monitoring role's
Alertmanager configuration and kube-prometheus-stack release as data.

Built as mappings and serialised by tai_bundle, never YAML text with values pasted in, so that
no inventory value (a receiver, a route, a storage class) can change the structure of what is
written. Pure functions, no Ansible import beyond the FilterModule hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ZONE = "topology.kubernetes.io/zone"


def monitoring_alertmanager_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """kube-prometheus-stack's alertmanager.config of this region."""
    receivers = cfg["receivers"]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {"receiver": str(cfg["default_receiver"]),
                  "group_by": [str(g) for g in cfg["group_by"]],
                  "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
                  "routes": [dict(r) for r in cfg["routes"]]},
        "inhibit_rules": [
            # A critical alert silences the warnings and infos of the same alert in the same
            # place.
            {"source_matchers": ['severity = "critical"'],
             "target_matchers": ['severity =~ "warning|info"'],
             "equal": ["alertname", "region", "namespace"]},
            {"source_matchers": ['severity = "warning"'],
             "target_matchers": ['severity = "info"'],
             "equal": ["alertname", "region", "namespace"]},
            # kube-prometheus-stack's InfoInhibitor silences info alerts of a namespace that
            # has others.
            {"source_matchers": ['alertname = "InfoInhibitor"'],
             "target_matchers": ['severity = "info"'], "equal": ["namespace"]}],
        "receivers": [{"name": str(name), **dict(receivers[name] or {})}
                      for name in sorted(receivers)],
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    }


def _volume(storage_class: Any, size: Any) -> dict[str, Any]:
    return {"volumeClaimTemplate": {"spec": {
        "storageClassName": str(storage_class), "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(size)}}}}}


def monitoring_releases(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """kube-prometheus-stack: release spec (pinned) and complete values."""
    release, region, chart = str(cfg["release"]), str(cfg["region"]), cfg["chart"]
    values: dict[str, Any] = {
        "crds": {"enabled": True},
        # The stock Kubernetes alerts and dashboards; TAI's own come from this role's manifests.
        "defaultRules": {"create": True},
        # GKE runs the control plane: its components cannot be scraped, and their rules would
        # fire forever. kube-dns replaces CoreDNS. kube-proxy binds its metrics to localhost.
        "kubeApiServer": {"enabled": True},
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "coreDns": {"enabled": False},
        "kubeDns": {"enabled": True},
        "nodeExporter": {"enabled": True},
        "kubeStateMetrics": {"enabled": True},
        "kube-state-metrics": {
            # kube_service_labels{label_app, label_slot}: the dashboard's active-slot panel and
            # the service-down alert read which slot each Service selects.
            "metricLabelsAllowlist": ["services=[app,slot]"],
            "prometheus": {"monitor": {"additionalLabels": {"release": release}}}},
        "prometheusOperator": {"enabled": True},
        "prometheus": {"enabled": True, "prometheusSpec": {
            "replicas": int(cfg["prometheus_replicas"]),
            "retention": str(cfg["prometheus_retention"]),
            "retentionSize": str(cfg["prometheus_retention_size"]),
            "resources": dict(cfg["prometheus_resources"]),
            # Sent with alerts, federation and remote write...
            "externalLabels": {"region": region},
            # ...and written on every scraped series too, so that local queries (dashboards,
            # rules) can group by region like a global view would.
            "scrapeClasses": [{"name": "tai-region", "default": True, "relabelings": [
                {"action": "replace", "targetLabel": "region", "replacement": region}]}],
            # Select every ServiceMonitor, PodMonitor and PrometheusRule of the cluster, not
            # only those labelled for this release.
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "probeSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
            "serviceMonitorNamespaceSelector": {},
            "ruleNamespaceSelector": {},
            "podAntiAffinity": "soft",
            "podAntiAffinityTopologyKey": ZONE,
            "storageSpec": _volume(cfg["storage_class"], cfg["prometheus_storage_size"])}},
        "alertmanager": {
            "enabled": True,
            "alertmanagerSpec": {
                "replicas": int(cfg["alertmanager_replicas"]),
                "podAntiAffinity": "soft",
                "podAntiAffinityTopologyKey": ZONE,
                # Receivers' credentials, read as files (see the receivers' *_file keys).
                "secrets": [str(cfg["alertmanager_secret_name"])],
                "storage": _volume(cfg["storage_class"], cfg["alertmanager_storage_size"])},
            "config": dict(cfg["alertmanager_config"])},
        "grafana": {
            "enabled": True,
            "replicas": int(cfg["grafana_replicas"]),
            # Empty: the chart generates the admin password once and keeps it in the Secret
            # kube-prometheus-stack-grafana (never in the values or build/).
            "adminPassword": "",
            "defaultDashboardsEnabled": True,
            "sidecar": {
                "dashboards": {"enabled": True, "label": "grafana_dashboard",
                               "labelValue": "1", "searchNamespace": "ALL"},
                "datasources": {"enabled": True, "defaultDatasourceEnabled": True}}},
    }
    return [{"name": release, "namespace": str(cfg["namespace"]), "chart": str(chart["chart"]),
             "repository": str(chart["repository"]), "version": str(chart["version"]),
             "values": values}]


def _alert(name: str, expr: str, duration: str, severity: str, summary: str,  # noqa: PLR0917 - the six parts of an alert rule
           description: str, **labels: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": duration,
            "labels": {"severity": severity, **labels},
            "annotations": {"summary": summary, "description": description}}


def monitoring_rules(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The PrometheusRule ``tai``: recording rules and alerts of the TAI services, Redis and
    Vault. PromQL is text by nature; every value placed in it is a Kubernetes name, a number or
    the list of gRPC codes (checked by the role's input rules), never YAML structure."""
    ns, vault_ns, region = str(cfg["tai_namespace"]), str(cfg["vault_namespace"]), \
        str(cfg["region"])
    services = [str(s) for s in cfg["tai_services"]]
    codes = [str(c) for c in cfg["grpc_error_codes"]]
    selector = f'namespace="{ns}", service=~"{"|".join(services)}"'
    by_slot = "namespace, service, slot, region"
    ratio = float(cfg["grpc_error_ratio_threshold"])
    min_rps = float(cfg["grpc_error_min_rps"])
    p99 = cfg["grpc_latency_p99_seconds"]
    handled = f'rate(grpc_server_handled_total{{namespace="{ns}"}}[5m])'
    recording = [
        {"record": "tai_service:grpc_server_handled:rate5m",
         "expr": f"sum by ({by_slot}) ({handled})"},
        {"record": "tai_service:grpc_server_errors:rate5m",
         "expr": f'sum by ({by_slot}) (rate(grpc_server_handled_total{{namespace="{ns}", '
                 f'grpc_code=~"{"|".join(codes)}"}}[5m])) or 0 * sum by ({by_slot}) ({handled})'},
        {"record": "tai_service:grpc_server_error_ratio:rate5m",
         "expr": "tai_service:grpc_server_errors:rate5m / tai_service:grpc_server_handled:rate5m"},
        # p99 handling time of unary RPCs (a stream's handling time is its whole life).
        {"record": "tai_service:grpc_server_handling_seconds:p99_rate5m",
         "expr": f"histogram_quantile(0.99, sum by ({by_slot}, le) (rate("
                 f'grpc_server_handling_seconds_bucket{{namespace="{ns}", grpc_type="unary"}}'
                 f"[5m])))"},
    ]
    service_rules = [
        # The slot that a Service selects (kube-state-metrics' label_slot) has no target that
        # answers scrapes: the service is down for its clients even if the other slot is up.
        _alert("TaiServiceDown",
               f"max by (namespace, service, slot, region) (label_replace(kube_service_labels{{"
               f'{selector}}}, "slot", "$1", "label_slot", "(.+)")) unless on (namespace, '
               f"service, slot) sum by (namespace, service, slot) (up{{{selector}}} == 1)",
               "2m", "critical",
               "{{ $labels.service }} is down in {{ $labels.region }}: no pod of its active "
               "slot {{ $labels.slot }} answers.",
               "The Service {{ $labels.namespace }}/{{ $labels.service }} selects slot "
               "{{ $labels.slot }}, and no target of that slot has been up for 2 minutes."),
    ] + [
        # One rule per service: the label keeps the rules distinct (promtool lint).
        _alert("TaiServiceAbsent", f'absent(up{{namespace="{ns}", service="{s}"}})', "5m",
               "critical", f"{s} has no scrape target in {region}.",
               f"Prometheus has found no {s} pod in {ns} for 5 minutes: the Deployments are "
               "gone or the ServiceMonitor no longer selects them.", service=s)
        for s in services]
    grpc_rules = [
        _alert("TaiGrpcErrorRatioHigh",
               f"tai_service:grpc_server_error_ratio:rate5m > {ratio} and on ({by_slot}) "
               f"tai_service:grpc_server_handled:rate5m > {min_rps}",
               "5m", "critical",
               "{{ $labels.service }} ({{ $labels.slot }}) in {{ $labels.region }} fails "
               "{{ $value | humanizePercentage }} of its RPCs.",
               f"Share of RPCs that finished with grpc_code {', '.join(codes)} over 5 minutes "
               f"is above {round(ratio * 100, 2)} %. gRPC errors travel in HTTP 200 "
               "responses: look at grpc_server_handled_total by grpc_code."),
        _alert("TaiGrpcLatencyHigh",
               f"tai_service:grpc_server_handling_seconds:p99_rate5m > {float(p99)}",
               "10m", "warning",
               "p99 latency of {{ $labels.service }} ({{ $labels.slot }}) in "
               "{{ $labels.region }} is {{ $value | humanizeDuration }}.",
               "The 99th percentile of unary RPC handling time has been above "
               f"{p99} s for 10 minutes."),
    ]
    redis_rules = [
        _alert("TaiRedisClusterNotOk", f'redis_cluster_state{{namespace="{ns}"}} != 1', "2m",
               "critical",
               "Redis node {{ $labels.pod }} in {{ $labels.region }} reports cluster_state "
               "other than ok.",
               "A Redis cluster that is not ok refuses writes to some or all slots (lost "
               "quorum, uncovered slots or a node that left)."),
        _alert("TaiRedisDown", f'redis_up{{namespace="{ns}"}} == 0', "2m", "critical",
               "redis_exporter of {{ $labels.pod }} in {{ $labels.region }} cannot reach its "
               "Redis.", "The exporter sidecar answers but its Redis server does not."),
        _alert("TaiRedisMetricsAbsent", f'absent(redis_cluster_state{{namespace="{ns}"}})',
               "10m", "warning", f"No Redis cluster metrics in {region}.",
               f"Prometheus has no redis_cluster_state series from {ns}: the redis_exporter "
               "sidecars or their ServiceMonitor are missing."),
    ]
    vault_rules = [
        _alert("TaiVaultSealed", f'vault_core_unsealed{{namespace="{vault_ns}"}} == 0', "1m",
               "critical", "Vault pod {{ $labels.pod }} in {{ $labels.region }} is sealed.",
               "A sealed Vault serves no secret: TAI pods that start now cannot get their "
               "credentials. Unseal it."),
        _alert("TaiVaultMetricsAbsent", f'absent(vault_core_unsealed{{namespace="{vault_ns}"}})',
               "10m", "warning", f"No Vault telemetry in {region}.",
               f"Prometheus has no vault_core_unsealed series from {vault_ns}: Vault is down "
               "or its ServiceMonitor is missing."),
    ]
    return {"groups": [
        {"name": "tai.grpc.recording", "interval": "30s", "rules": recording},
        {"name": "tai.services", "rules": service_rules},
        {"name": "tai.grpc", "rules": grpc_rules},
        {"name": "tai.redis", "rules": redis_rules},
        {"name": "tai.vault", "rules": vault_rules}]}


def monitoring_manifests(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The role's own objects: the TAI PrometheusRule and one ConfigMap per dashboard (the
    Grafana sidecar loads those labelled grafana_dashboard: "1")."""
    labels = {str(k): str(v) for k, v in cfg["labels"].items()}
    ns = str(cfg["namespace"])
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "tai", "namespace": ns,
                         "labels": {"release": str(cfg["release"]), **labels}},
            "spec": monitoring_rules(cfg)}
    dashboards = [{"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": f"grafana-dashboard-{name}", "namespace": ns,
                                "labels": {"grafana_dashboard": "1", **labels}},
                   "data": {f"{name}.json": str(text)}}
                  for name, text in cfg["dashboards"].items()]
    return [rule, *dashboards]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"monitoring_alertmanager_config": monitoring_alertmanager_config,
                "monitoring_releases": monitoring_releases,
                "monitoring_manifests": monitoring_manifests}
