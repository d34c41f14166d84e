# Copyright: tai-deploy contributors
"""Filters istio_releases / istio_manifests: the istio role's releases and objects as data.

``istio_releases`` returns the Helm releases of the mesh (pinned chart, complete values) and of
cert-manager, which owns the gateway's TLS certificate; ``istio_manifests`` the objects the role
applies itself: mesh-wide mTLS (PeerAuthentication ``default``), the ACME ClusterIssuer that
proves the domain with Cloud DNS DNS-01 records (cert-manager's Google service account, through
workload identity, may write them), and the Certificate whose Secret the chart's Gateway names
as its credential (``istio-system/tai-tls-cert``). Built as data and serialised by tai_bundle,
so no value can change the structure of what is written.

Pure functions, no Ansible import beyond the FilterModule hook.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

ZONE = "topology.kubernetes.io/zone"


def _spec(name: str, namespace: str, chart: Mapping[str, Any], values: Mapping[str, Any],
          ) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "chart": str(chart["chart"]),
            "repository": str(chart["repository"]), "version": str(chart["version"]),
            "values": dict(values)}


def _zone_spread(selector: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": dict(selector)}}]


def _gateway(label: str, lo: Any, hi: Any, resources: Mapping[str, Any],
             service: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "labels": {"istio": label},
        "autoscaling": {"enabled": True, "minReplicas": int(lo), "maxReplicas": int(hi),
                        "targetCPUUtilizationPercentage": 80},
        "podDisruptionBudget": {"minAvailable": 1},
        "topologySpreadConstraints": _zone_spread({"istio": label}),
        "resources": dict(resources),
        "service": dict(service)}


def istio_releases(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    ns, charts = str(cfg["namespace"]), cfg["charts"]
    neg = json.dumps({"exposed_ports": {"443": {"name": str(cfg["ingress_neg_name"])}}})
    cm = cfg["cert_manager"]
    return [
        # The revision whose validating webhook serves the cluster-wide default.
        _spec("istio-base", ns, charts["istio_base"], {"defaultRevision": "default"}),
        # GKE profile: CNI binaries in /home/kubernetes/bin, ResourceQuota for the
        # system-node-critical DaemonSet outside kube-system.
        _spec("istio-cni", ns, charts["istio_cni"], {"global": {"platform": "gke"}}),
        _spec("istiod", ns, charts["istiod"], {
            "global": {"platform": "gke", "meshID": "tai",
                       "multiCluster": {"clusterName": str(cfg["region"])},
                       "logAsJson": True, "defaultPodDisruptionBudget": {"enabled": True}},
            "pilot": {
                "autoscaleEnabled": True,
                "autoscaleMin": int(cfg["istiod_min_replicas"]),
                "autoscaleMax": int(cfg["istiod_max_replicas"]),
                "replicaCount": int(cfg["istiod_min_replicas"]),
                # Injection relies on the istio-cni node agent instead of the privileged
                # istio-init container.
                "cni": {"enabled": True},
                "resources": dict(cfg["istiod_resources"]),
                "topologySpreadConstraints": _zone_spread({"app": "istiod"})},
            "meshConfig": {
                "accessLogFile": "/dev/stdout",
                "accessLogEncoding": str(cfg["access_log_encoding"]),
                "enablePrometheusMerge": True,
                # REGISTRY_ONLY: a sidecar reaches only Services and ServiceEntries.
                "outboundTrafficPolicy": {"mode": str(cfg["outbound_traffic_policy"])},
                "defaultConfig": {"holdApplicationUntilProxyStarts":
                                  bool(cfg["hold_application_until_proxy_starts"])}}}),
        # Backend of the dns role's load balancer through NEGs: no Service load balancer of
        # its own.
        _spec("istio-ingressgateway", ns, charts["istio_gateway"], _gateway(
            "ingressgateway", cfg["ingress_min_replicas"], cfg["ingress_max_replicas"],
            cfg["gateway_resources"],
            {"type": "ClusterIP", "annotations": {"cloud.google.com/neg": neg},
             "ports": [dict(p) for p in cfg["ingress_ports"]]})),
        _spec("istio-egressgateway", ns, charts["istio_gateway"], _gateway(
            "egressgateway", cfg["egress_min_replicas"], cfg["egress_max_replicas"],
            cfg["gateway_resources"],
            {"type": "ClusterIP", "ports": [
                {"name": "http2", "port": 80, "targetPort": 80, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 443, "protocol": "TCP"}]})),
        _spec("cert-manager", str(cm["namespace"]), charts["cert_manager"],
              cert_manager_values(cm)),
    ]


def cert_manager_values(cm: Mapping[str, Any]) -> dict[str, Any]:
    """cert-manager with its CRDs as chart templates (Helm upgrades them with the chart),
    two replicas of each component, and workload identity for the Cloud DNS solver."""
    ha = {"replicaCount": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}
    return {
        "crds": {"enabled": True, "keep": True},
        "global": {"leaderElection": {"namespace": str(cm["namespace"])}},
        **ha,
        "topologySpreadConstraints": _zone_spread(
            {"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/component":
             "controller"}),
        # The controller's Kubernetes service account acts as this Google service account
        # (roles/dns.admin, granted by the project phase) to write the _acme-challenge records.
        "serviceAccount": {"annotations": {
            "iam.gke.io/gcp-service-account": str(cm["gcp_service_account"])}},
        "webhook": dict(ha),
        "cainjector": dict(ha),
        # Its ServiceMonitor needs Prometheus Operator's CRDs, which the monitoring role
        # installs later; the metrics port stays scrapeable.
        "prometheus": {"enabled": True, "servicemonitor": {"enabled": False}},
    }


def istio_manifests(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    labels = {str(k): str(v) for k, v in cfg["labels"].items()}
    cm = cfg["cert_manager"]
    acme: dict[str, Any] = {
        "server": str(cm["acme_server"]),
        "privateKeySecretRef": {"name": f"{cm['issuer_name']}-account"},
        "solvers": [{
            "selector": {"dnsZones": [str(z) for z in cm["dns_zones"]]},
            # Ambient credentials: the controller's workload identity (no key in a Secret).
            "dns01": {"cloudDNS": {"project": str(cm["dns_project"])}}}]}
    if cm.get("acme_email"):
        acme["email"] = str(cm["acme_email"])
    return [
        # Mesh-wide mutual TLS: the PeerAuthentication named default in the root namespace.
        {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
         "metadata": {"name": "default", "namespace": str(cfg["namespace"]),
                      "labels": dict(labels)},
         "spec": {"mtls": {"mode": str(cfg["mtls_mode"])}}},
        {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
         "metadata": {"name": str(cm["issuer_name"]), "labels": dict(labels)},
         "spec": {"acme": acme}},
        # The Gateway's credential (charts/tai-chart istio.gateway.credentialName): a Secret
        # of type kubernetes.io/tls in the gateway's namespace, renewed by cert-manager.
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
         "metadata": {"name": str(cm["secret_name"]), "namespace": str(cfg["namespace"]),
                      "labels": dict(labels)},
         "spec": {"secretName": str(cm["secret_name"]),
                  "dnsNames": [str(n) for n in _names(cm["dns_names"])],
                  "duration": str(cm["duration"]), "renewBefore": str(cm["renew_before"]),
                  "privateKey": {"algorithm": "ECDSA", "size": 256,
                                 "rotationPolicy": "Always"},
                  # the Secret is cert-manager's, not a pruned object of this role
                  "secretTemplate": {"labels": {"app.kubernetes.io/part-of": "tai"}},
                  "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer",
                                "name": str(cm["issuer_name"])}}},
    ]


def _names(names: Sequence[Any]) -> list[str]:
    return sorted({str(n) for n in names}, key=lambda n: (n.startswith("*"), n))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"istio_releases": istio_releases, "istio_manifests": istio_manifests}
