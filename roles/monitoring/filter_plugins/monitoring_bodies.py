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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"monitoring_alertmanager_config": monitoring_alertmanager_config,
                "monitoring_releases": monitoring_releases}
