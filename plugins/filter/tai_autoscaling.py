# Copyright: tai-deploy contributors
"""Filters of the autoscaling role: its effective settings, autoscalers and KEDA release as data.

The role hands its inputs to these filters instead of templating YAML with values pasted in
(roles/autoscaling/vars/main.yml), so that no value can change the structure of what is
written: each autoscaler is a mapping that the bundle serialises. The input rules live in
module_utils/tai_deploy/inventory.py (they run before any of this). Pure functions; tests
import them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

_TRUE = ("y", "yes", "on", "1", "true", "t")

# KEDA's operator logs in to Vault with the token in the file its TriggerAuthentication names
# (hashiCorpVault credential.serviceAccount; KEDA 2.18 reads that file and sends it as the jwt
# of auth/<mount>/login, it requests no audience of its own). The pod's default token is for
# the API server's audience, so a Vault role bound to an audience would refuse it: the KEDA
# release mounts a projected token of the Vault audience here instead (the kubelet requests it
# and rotates it), and the TriggerAuthentication names it.
KEDA_VAULT_TOKEN_DIR = "/var/run/secrets/tai/vault"
KEDA_VAULT_TOKEN_FILE = "token"
KEDA_VAULT_TOKEN_SECONDS = 3600


def _bool(value: Any) -> bool:
    """Ansible's bool filter."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def _int(value: Any) -> int:
    """Jinja's int filter: a number, or 0 for what is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return 0


def tai_autoscaling_effective(merged: Mapping[str, Mapping[str, Any]], region: str,
                              default_slots: Sequence[str]) -> dict[str, dict[str, Any]]:
    """This region's autoscalers: {hpa: {svc: entry}, keda: {svc: entry}}.

    Enabled entries only, the entry's ``regions.<region>`` laid over it, slots resolved.
    """
    out: dict[str, dict[str, Any]] = {"hpa": {}, "keda": {}}
    for kind in ("hpa", "keda"):
        for service, entry in sorted((merged.get(kind) or {}).items()):
            if not isinstance(entry, Mapping) or not _bool(entry.get("enabled", True)):
                continue
            regions = entry.get("regions") or {}
            override = (regions.get(region) if isinstance(regions, Mapping) else None) or {}
            flat = {**entry, **(override if isinstance(override, Mapping) else {})}
            out[kind][service] = {
                "min_replicas": flat.get("min_replicas"),
                "max_replicas": flat.get("max_replicas"),
                "cpu_utilization": flat.get("cpu_utilization", 0),
                "grpc_rps_per_replica": flat.get("grpc_rps_per_replica", 0),
                "redis_list_name": flat.get("redis_list_name", ""),
                "redis_list_length": flat.get("redis_list_length", 0),
                "slots": flat.get("slots", list(default_slots)),
            }
    return out


def _meta(service: str, slot: str, namespace: str,
          owner_labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": f"{service}-{slot}", "namespace": namespace,
            "labels": {**owner_labels, "app": service, "slot": slot,
                       "app.kubernetes.io/part-of": "tai"}}


def _target(service: str, slot: str) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{service}-{slot}"}


def _hpa(service: str, slot: str, cfg: Mapping[str, Any], *, namespace: str,
         owner_labels: Mapping[str, str], stabilization: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(service, slot, namespace, owner_labels),
        "spec": {
            "scaleTargetRef": _target(service, slot),
            "minReplicas": _int(cfg["min_replicas"]),
            "maxReplicas": _int(cfg["max_replicas"]),
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization",
                           "averageUtilization": _int(cfg["cpu_utilization"])}}}],
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": stabilization,
                              "policies": [{"type": "Percent", "value": 50,
                                            "periodSeconds": 60}]},
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30},
                                         {"type": "Pods", "value": 4, "periodSeconds": 30}]},
            },
        },
    }


def _triggers(service: str, slot: str, cfg: Mapping[str, Any], *, namespace: str,
              prometheus_url: str, rate_window: str, redis_addresses: Sequence[str],
              redis_auth: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    out: list[dict[str, Any]] = []
    if _int(cfg["cpu_utilization"]) > 0:
        out.append({"type": "cpu", "metricType": "Utilization",
                    "metadata": {"value": str(_int(cfg["cpu_utilization"]))}})
    if _int(cfg["grpc_rps_per_replica"]) > 0:
        # RPCs per second the slot's pods start, spread over threshold RPC/s per replica.
        query = (f'sum(rate(grpc_server_started_total{{namespace="{namespace}", '
                 f'service="{service}", slot="{slot}"}}[{rate_window}])) or vector(0)')
        out.append({"type": "prometheus", "metadata": {
            "serverAddress": prometheus_url, "query": query,
            "threshold": str(_int(cfg["grpc_rps_per_replica"]))}})
    if cfg["redis_list_name"]:
        # Items waiting in the Redis list, spread over listLength items per replica. Redis
        # speaks TLS only and knows only its ACL users: KEDA logs in as the user of its own
        # (LLEN only), with the password and CA of the TriggerAuthentication.
        out.append({"type": "redis-cluster", "metadata": {
            "addresses": ",".join(redis_addresses), "listName": cfg["redis_list_name"],
            "listLength": str(_int(cfg["redis_list_length"])),
            "username": str(redis_auth["username"]), "enableTLS": "true"},
            "authenticationRef": {"name": str(redis_auth["name"])}})
    # No trigger at all is refused by the input rules before this runs.
    return out or None


def tai_autoscaling_manifests(effective: Mapping[str, Mapping[str, Any]], *, namespace: str,
                              owner_labels: Mapping[str, str], stabilization_seconds: Any,
                              polling_interval: Any, prometheus_url: str, rate_window: str,
                              redis_addresses: Sequence[str],
                              redis_auth: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One autoscaler per slot Deployment <service>-<slot>: an HPA or a ScaledObject."""
    stabilization = _int(stabilization_seconds)
    out: list[dict[str, Any]] = []
    for service, cfg in sorted(effective.get("hpa", {}).items()):
        for slot in sorted(set(cfg["slots"])):
            out.append(_hpa(service, slot, cfg, namespace=namespace, owner_labels=owner_labels,
                            stabilization=stabilization))
    for service, cfg in sorted(effective.get("keda", {}).items()):
        for slot in sorted(set(cfg["slots"])):
            out.append({
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": _meta(service, slot, namespace, owner_labels),
                "spec": {
                    "scaleTargetRef": _target(service, slot),
                    "minReplicaCount": _int(cfg["min_replicas"]),
                    "maxReplicaCount": _int(cfg["max_replicas"]),
                    "pollingInterval": _int(polling_interval),
                    "advanced": {"horizontalPodAutoscalerConfig": {
                        "name": f"keda-hpa-{service}-{slot}",
                        "behavior": {"scaleDown": {
                            "stabilizationWindowSeconds": stabilization}}}},
                    "triggers": _triggers(service, slot, cfg, namespace=namespace,
                                          prometheus_url=prometheus_url,
                                          rate_window=rate_window,
                                          redis_addresses=redis_addresses,
                                          redis_auth=redis_auth),
                },
            })
    return out


def tai_keda_trigger_authentications(manifests: Sequence[Mapping[str, Any]], *,
                                     namespace: str, owner_labels: Mapping[str, str],
                                     redis_auth: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The TriggerAuthentication of the redis-cluster triggers, when a ScaledObject has one.

    The password never passes through a Kubernetes Secret: KEDA's operator reads it from
    Vault (provider hashiCorpVault) with a Kubernetes-auth login of its own service account
    to a role that reads that one path (the vault role's keda-redis). The Redis CA, which is
    public, comes from the chart's redis-tls Secret (key ca.crt).
    """
    name = str(redis_auth["name"])
    used = any((t.get("authenticationRef") or {}).get("name") == name
               for m in manifests if m.get("kind") == "ScaledObject"
               for t in (m.get("spec") or {}).get("triggers") or [])
    if not used:
        return []
    return [{
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {**owner_labels, "app.kubernetes.io/part-of": "tai"}},
        "spec": {
            "secretTargetRef": [{"parameter": "ca", "name": str(redis_auth["ca_secret"]),
                                 "key": str(redis_auth["ca_key"])}],
            "hashiCorpVault": {
                "address": str(redis_auth["vault_address"]),
                "authentication": "kubernetes",
                "mount": str(redis_auth["vault_auth_path"]),
                "role": str(redis_auth["vault_role"]),
                # The operator's projected token of the Vault audience (tai_keda_releases
                # mounts it), not its default API token: the Vault role is bound to that
                # audience.
                "credential": {"serviceAccount":
                               f"{KEDA_VAULT_TOKEN_DIR}/{KEDA_VAULT_TOKEN_FILE}"},
                "secrets": [{"parameter": "password", "key": "password", "type": "secretV2",
                             "path": str(redis_auth["vault_secret_path"])}],
            },
        },
    }]


def tai_keda_releases(chart: Mapping[str, Any], namespace: str,
                      vault_ca_secret: str = "", vault_audience: str = ""
                      ) -> list[dict[str, Any]]:
    """The KEDA release: its pinned chart and complete values. With ``vault_ca_secret`` (a
    Secret of KEDA's namespace holding Vault's CA as ca.crt, written by the vault role) the
    operator verifies Vault with it (VAULT_CACERT, read by the Vault client of KEDA's
    hashiCorpVault provider). With ``vault_audience`` the operator's pods get a projected
    service-account token of that audience (KEDA_VAULT_TOKEN_DIR), which the
    TriggerAuthentication logs in to Vault with."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    vault_values: dict[str, Any] = {}
    if vault_ca_secret:
        vault_values = {"env": [{"name": "VAULT_CACERT", "value": "/vault/tls/ca.crt"}]}
        volumes.append({"name": "vault-ca", "secret": {
            "secretName": vault_ca_secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
        mounts.append({"name": "vault-ca", "mountPath": "/vault/tls", "readOnly": True})
    if vault_audience:
        # Kubernetes API reference, ServiceAccountTokenProjection: audience, expirationSeconds
        # (at least 600; the kubelet refreshes the file at 80 % of it), path.
        volumes.append({"name": "vault-token", "projected": {"sources": [{
            "serviceAccountToken": {"audience": vault_audience,
                                    "expirationSeconds": KEDA_VAULT_TOKEN_SECONDS,
                                    "path": KEDA_VAULT_TOKEN_FILE}}]}})
        mounts.append({"name": "vault-token", "mountPath": KEDA_VAULT_TOKEN_DIR,
                       "readOnly": True})
    if volumes:
        vault_values["volumes"] = {"keda": {"extraVolumes": volumes, "extraVolumeMounts": mounts}}
    restricted_pod = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    restricted_container = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}}
    monitor = {"enabled": True, "serviceMonitor": {
        "enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}}}
    components = ("operator", "metricServer", "webhooks")
    return [{
        "name": "keda",
        "namespace": namespace,
        "chart": chart["chart"],
        "repository": chart["repository"],
        "version": str(chart["version"]),
        "values": {
            "crds": {"install": True},
            # One active operator (leader election) and a standby; one metrics server, since
            # only one can serve external.metrics.k8s.io.
            "operator": {"replicaCount": 2},
            "metricsServer": {"replicaCount": 1},
            "webhooks": {"enabled": True, "replicaCount": 1},
            "podDisruptionBudget": {"operator": {"minAvailable": 1}},
            # The keda namespace enforces the restricted Pod Security Standard.
            "podSecurityContext": {c: dict(restricted_pod) for c in components},
            "securityContext": {c: dict(restricted_container) for c in components},
            "resources": {
                "operator": {"requests": {"cpu": "100m", "memory": "128Mi"},
                             "limits": {"memory": "1Gi"}},
                "metricServer": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                 "limits": {"memory": "1Gi"}},
                "webhooks": {"requests": {"cpu": "50m", "memory": "64Mi"},
                             "limits": {"memory": "256Mi"}},
            },
            "prometheus": {c: dict(monitor) for c in components},
            **vault_values,
        },
    }]


# ---- apply mode: what the cluster has ----------------------------------------------------

def tai_autoscaling_owned(objects: Sequence[Mapping[str, Any]],
                          owner_labels: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The HPAs and ScaledObjects that carry this role's labels."""
    return [o for o in objects
            if all(((o.get("metadata") or {}).get("labels") or {}).get(k) == v
                   for k, v in owner_labels.items())]


def _manifest_path(namespace: str, obj: Mapping[str, Any]) -> str:
    return f"manifests/{namespace}/{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def tai_autoscaling_skipped(manifests: Sequence[Mapping[str, Any]], *,
                            live_deployments: Sequence[str], live_replicas: Mapping[str, Any],
                            live_scaledobjects: Sequence[str], namespace: str,
                            region: str) -> list[dict[str, str]]:
    """Planned autoscalers not created in this converge, each with the reason.

    - the target slot Deployment does not exist (the idle slot of a single-slot install: the
      rolling upgrade creates it; the next converge creates its autoscaler);
    - a ScaledObject that does not exist yet for a Deployment at 0 replicas (the idle slot):
      KEDA would scale it up to minReplicaCount at once. An existing one is applied: the swap
      paused it (autoscaling.keda.sh/paused-replicas), and applying keeps that annotation.
    """
    out: list[dict[str, str]] = []
    for obj in manifests:
        target = obj["spec"]["scaleTargetRef"]["name"]
        ref = f"{obj['kind']} {namespace}/{obj['metadata']['name']}"
        if target not in live_deployments:
            out.append({"path": _manifest_path(namespace, obj), "msg": (
                f"{ref} is not created in {region}: its Deployment {target} does not exist "
                "yet (a slot that is not deployed); the next converge after the rolling "
                "upgrade has created it adds it.")})
        elif (obj["kind"] == "ScaledObject" and _int(live_replicas[target]) == 0
              and obj["metadata"]["name"] not in live_scaledobjects):
            out.append({"path": _manifest_path(namespace, obj), "msg": (
                f"{ref} is not created in {region}: its Deployment {target} is the idle slot "
                f"(0 replicas) and KEDA would scale it up to {obj['spec']['minReplicaCount']}; "
                "a converge after that slot serves adds it.")})
    return out


def tai_autoscaling_foreign(objects: Sequence[Mapping[str, Any]], *, owned: Sequence[str],
                            targets: Sequence[str], namespace: str, region: str) -> list[str]:
    """An autoscaler of someone else on a planned target: two autoscalers on one Deployment fight.

    KEDA's own keda-hpa-* HPAs follow their ScaledObjects and are left out.
    """
    out: list[str] = []
    for obj in objects:
        name = obj["metadata"]["name"]
        target = ((obj.get("spec") or {}).get("scaleTargetRef") or {}).get("name", "")
        if name in owned or name.startswith("keda-hpa-") or target not in targets:
            continue
        out.append(f"{obj['kind']} {namespace}/{name}, which this role does not manage, "
                   f"already scales Deployment {target} in {region}; two autoscalers on one "
                   "Deployment fight, remove it.")
    return out


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {f.__name__: f for f in (
            tai_autoscaling_effective, tai_autoscaling_manifests, tai_keda_releases,
            tai_keda_trigger_authentications, tai_autoscaling_owned, tai_autoscaling_skipped,
            tai_autoscaling_foreign)}
