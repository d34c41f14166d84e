# Copyright: tai-deploy contributors
"""Filter of the logging role: its Helm releases (pinned charts, complete values) as data.

roles/logging/vars/main.yml hands its settings to ``tai_logging_releases`` instead of
templating YAML with values pasted in, so that no value can change the structure of what is
written. The input rules live in module_utils/tai_deploy/inventory.py (they run first); the
fluent-bit configuration text comes from tai_fluent_bit_config (plugins/filter/tai_bodies.py).
Pure function; tests import it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _spec(name: str, namespace: str, chart: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "chart": chart["chart"],
            "repository": chart["repository"], "version": str(chart["version"])}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return int(float(value))


def tai_logging_releases(charts: Mapping[str, Mapping[str, Any]], *, namespace: str,
                         elasticsearch: bool, kibana: bool, elasticsearch_host: str,
                         elasticsearch_replicas: Any, elasticsearch_heap: str,
                         elasticsearch_storage_class: str, elasticsearch_storage_size: str,
                         credentials_secret: str, certs_secret: str,
                         fluent_bit_gcp_service_account: str,
                         fluent_bit_resources: Mapping[str, Any],
                         fluent_bit_config: Mapping[str, str]) -> list[dict[str, Any]]:
    """Release specs and complete values, in install order.

    Elasticsearch first (fluent-bit reads its password Secret), Kibana on top of it,
    fluent-bit last.
    """
    out: list[dict[str, Any]] = []
    if elasticsearch:
        out.append({**_spec("elasticsearch", namespace, charts["elasticsearch"]), "values": {
            "clusterName": "elasticsearch",
            "nodeGroup": "master",
            "replicas": _int(elasticsearch_replicas),
            "esJavaOpts": f"-Xms{elasticsearch_heap} -Xmx{elasticsearch_heap}",
            "resources": {"requests": {"cpu": "1", "memory": "4Gi"},
                          "limits": {"memory": "4Gi"}},
            # One master per zone; the chart's TLS, credentials (Secret
            # elasticsearch-master-credentials) and self-signed CA (Secret
            # elasticsearch-master-certs) stay on.
            "antiAffinity": "hard",
            "antiAffinityTopologyKey": "topology.kubernetes.io/zone",
            "createCert": True,
            "protocol": "https",
            "volumeClaimTemplate": {
                "storageClassName": elasticsearch_storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": elasticsearch_storage_size}},
            },
            # vm.max_map_count=262144 on each node (privileged init container; see the
            # namespace's Pod Security exception).
            "sysctlInitContainer": {"enabled": True},
        }})
    if kibana:
        out.append({**_spec("kibana", namespace, charts["kibana"]), "values": {
            "elasticsearchHosts": f"https://{elasticsearch_host}:9200",
            "elasticsearchCertificateSecret": certs_secret,
            "elasticsearchCredentialSecret": credentials_secret,
            "replicas": 1,
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                          "limits": {"memory": "2Gi"}},
            "service": {"type": "ClusterIP"},
        }})
    if elasticsearch:
        es: dict[str, Any] = {
            "env": [{"name": f"ES_{key.upper()}", "valueFrom": {"secretKeyRef": {
                "name": credentials_secret, "key": key}}} for key in ("username", "password")],
            "extraVolumes": [{"name": "es-certs", "secret": {"secretName": certs_secret}}],
            "extraVolumeMounts": [{"name": "es-certs", "mountPath": "/fluent-bit/es-certs",
                                   "readOnly": True}],
        }
    else:
        es = {"env": [], "extraVolumes": [], "extraVolumeMounts": []}
    out.append({**_spec("fluent-bit", namespace, charts["fluent_bit"]), "values": {
        "kind": "DaemonSet",
        "serviceAccount": {"create": True, "name": "fluent-bit", "annotations": {
            "iam.gke.io/gcp-service-account": fluent_bit_gcp_service_account}},
        # Every node, spot nodes (tainted) included; critical so that eviction under pressure
        # takes it last (the ResourceQuota of this role admits the priority class here).
        "tolerations": [{"operator": "Exists"}],
        "priorityClassName": "system-node-critical",
        "resources": dict(fluent_bit_resources),
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "daemonSetVolumes": [
            {"name": "varlog", "hostPath": {"path": "/var/log"}},
            {"name": "state", "hostPath": {"path": "/var/lib/fluent-bit",
                                           "type": "DirectoryOrCreate"}},
            {"name": "etcmachineid", "hostPath": {"path": "/etc/machine-id", "type": "File"}},
        ],
        "daemonSetVolumeMounts": [
            {"name": "varlog", "mountPath": "/var/log", "readOnly": True},
            {"name": "state", "mountPath": "/var/fluent-bit/state"},
            {"name": "etcmachineid", "mountPath": "/etc/machine-id", "readOnly": True},
        ],
        **es,
        "serviceMonitor": {"enabled": True, "selector": {"release": "kube-prometheus-stack"}},
        "config": dict(fluent_bit_config),
    }})
    return out


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_logging_releases": tai_logging_releases}
