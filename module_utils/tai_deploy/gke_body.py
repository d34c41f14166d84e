"""The GKE v1 ``Cluster`` object of one region, built as data (never as interpolated text).

``cluster_body(values)`` returns the ``cluster`` of a ``clusters.create`` request
(https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters;
field names and enums from Google's container v1 discovery document shipped in
google-api-python-client, ``discovery_cache/documents/container.v1.json``). Every input string
lands in a JSON string value; nothing is parsed from text, so a name holding a newline, a colon or
a brace cannot add a field.

Hardened by default, after the CIS GKE benchmark and the safer-cluster module of
terraform-google-kubernetes-engine:

- private nodes (``networkConfig.defaultEnablePrivateNodes``; ``privateClusterConfig
  .enablePrivateNodes`` is deprecated in the discovery document);
- control plane: the DNS-based endpoint (IAM-checked, no IP allowlist to keep) with the public IP
  endpoint off, or the public IP endpoint restricted to the inventory's authorized networks
  (``controlPlaneEndpointsConfig``; the top-level ``masterAuthorizedNetworksConfig`` is deprecated);
- the named VPC, subnet and secondary ranges; Dataplane V2 (or the older Calico add-on);
- the dedicated node service account, shielded nodes with secure boot, COS containerd images,
  the GKE metadata server for workload identity;
- application-layer secrets encryption with a regional Cloud KMS key; Binary Authorization
  enforcing the project policy; a recurring maintenance window;
- no legacy ABAC, no client certificate, no basic auth; ``loggingConfig``/``monitoringConfig``
  only (the API refuses them next to ``loggingService``/``monitoringService``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

# Anchor of the recurring maintenance window: a Saturday in the past (any date works; GKE only
# uses its time of day and the RRULE). Fixed, so that the body does not change between runs.
MAINTENANCE_ANCHOR = datetime(2026, 1, 3, tzinfo=UTC)
DATAPATH_PROVIDERS = ("ADVANCED_DATAPATH", "LEGACY_DATAPATH")
CONTROL_PLANE_ACCESS = ("dns", "authorized_networks")


class BodyError(ValueError):
    """An input the body cannot hold; the message is one sentence."""


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise BodyError(f"{what} is {value!r}; give a whole number.")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BodyError(f"{what} is {value!r}; give a whole number.") from None


def network_path(project: str, network: str) -> str:
    return f"projects/{project}/global/networks/{network}"


def subnetwork_path(project: str, region: str, subnet: str) -> str:
    return f"projects/{project}/regions/{region}/subnetworks/{subnet}"


def kms_key_path(project: str, location: str, ring: str, key: str) -> str:
    return f"projects/{project}/locations/{location}/keyRings/{ring}/cryptoKeys/{key}"


def node_service_account(project: str, account: str) -> str:
    """An account id (tai-gke-nodes) becomes its e-mail; an e-mail is kept as given."""
    return account if "@" in account else f"{account}@{project}.iam.gserviceaccount.com"


def maintenance_window(start: str, hours: int, recurrence: str) -> dict[str, Any]:
    """RecurringTimeWindow from a UTC time of day (HH:MM), a length and an RRULE."""
    hhmm = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", start)
    if not hhmm:
        raise BodyError(f"gke_maintenance_start is {start!r}; give a UTC time of day as HH:MM.")
    hour, minute = int(hhmm.group(1)), int(hhmm.group(2))
    begin = MAINTENANCE_ANCHOR.replace(hour=hour, minute=minute)
    end = begin + timedelta(hours=hours)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {"window": {"startTime": begin.strftime(fmt), "endTime": end.strftime(fmt)},
            "recurrence": recurrence}


def _control_plane(values: Mapping[str, Any]) -> dict[str, Any]:
    dns = values["control_plane_access"] == "dns"
    blocks = [{"displayName": str(n.get("name") or n["cidr"]), "cidrBlock": str(n["cidr"])}
              for n in values.get("authorized_networks") or []]
    return {
        # IAM (container.clusters.connect) decides on every request to the DNS endpoint.
        "dnsEndpointConfig": {"allowExternalTraffic": dns},
        "ipEndpointsConfig": {
            "enabled": True,
            "enablePublicEndpoint": not dns,
            "authorizedNetworksConfig": {
                "enabled": True,
                "cidrBlocks": blocks,
                # Google Cloud's public addresses are not trusted networks (CIS GKE 5.6.3).
                "gcpPublicCidrsAccessEnabled": False,
            },
        },
    }


def _node_pool(values: Mapping[str, Any], name: str, pool: Mapping[str, Any]) -> dict[str, Any]:
    zones = len(values["zones"]) or 1
    where = f"Node pool {name} of region {values['region']}"
    spot = bool(pool["spot"])
    labels = {str(k): str(v) for k, v in (pool.get("labels") or {}).items()}
    labels["region"] = str(values["region"])
    taints = [{"key": str(t["key"]), "value": str(t.get("value", "")), "effect": str(t["effect"])}
              for t in pool.get("taints") or []]
    return {
        "name": f"{name}-pool",
        # initialNodeCount is per zone; the inventory gives regional totals.
        "initialNodeCount": math.ceil(
            _int(pool["initial_nodes"], f"{where}: initial_nodes") / zones),
        "autoscaling": {
            "enabled": True,
            "locationPolicy": "ANY" if spot else "BALANCED",
            "totalMinNodeCount": _int(pool["min_nodes"], f"{where}: min_nodes"),
            "totalMaxNodeCount": _int(pool["max_nodes"], f"{where}: max_nodes"),
        },
        "management": {"autoRepair": True, "autoUpgrade": True},
        "config": {
            "machineType": str(pool["machine_type"]),
            "diskSizeGb": _int(pool["disk_size_gb"], f"{where}: disk_size_gb"),
            # Container-Optimized OS with containerd (CIS GKE 5.5.1).
            "imageType": "COS_CONTAINERD",
            "spot": spot,
            "oauthScopes": [str(s) for s in values["oauth_scopes"]],
            "serviceAccount": node_service_account(str(values["project"]),
                                                   str(values["node_service_account"])),
            "labels": labels,
            "taints": taints,
            "workloadMetadataConfig": {
                "mode": "GKE_METADATA" if values["workload_identity"] else "GCE_METADATA"},
            "shieldedInstanceConfig": {"enableSecureBoot": True,
                                       "enableIntegrityMonitoring": True},
        },
    }


def cluster_body(values: Mapping[str, Any]) -> dict[str, Any]:
    """The v1 Cluster (with its node pools) of one region; ``values`` as the role passes them."""
    project, region = str(values["project"]), str(values["region"])
    calico = values["datapath_provider"] == "LEGACY_DATAPATH"
    addons: dict[str, Any] = {"httpLoadBalancing": {"disabled": False},
                              "horizontalPodAutoscaling": {"disabled": False}}
    network_config: dict[str, Any] = {
        "defaultEnablePrivateNodes": bool(values["private_nodes"]),
        "datapathProvider": str(values["datapath_provider"]),
        "enableIntraNodeVisibility": bool(values["intranode_visibility"]),
    }
    body: dict[str, Any] = {
        "name": str(values["cluster_name"]),
        "description": f"TAI cluster ({values['environment']}, {region})",
        "locations": [str(z) for z in values["zones"]],
        "releaseChannel": {"channel": str(values["release_channel"])},
        "initialClusterVersion": str(values["kubernetes_version"]),
        "network": network_path(project, str(values["network"])),
        "subnetwork": subnetwork_path(project, region, str(values["subnetwork"])),
        "ipAllocationPolicy": {
            "useIpAliases": True,
            "clusterSecondaryRangeName": str(values["pods_range"]),
            "servicesSecondaryRangeName": str(values["services_range"]),
        },
        "networkConfig": network_config,
        "controlPlaneEndpointsConfig": _control_plane(values),
        "addonsConfig": addons,
        "loggingConfig": {"componentConfig": {
            "enableComponents": [str(c) for c in values["logging_components"]]}},
        "monitoringConfig": {"componentConfig": {
            "enableComponents": [str(c) for c in values["monitoring_components"]]}},
        "workloadIdentityConfig": {
            # An empty pool disables workload identity (on update as well as on creation).
            "workloadPool": f"{project}.svc.id.goog" if values["workload_identity"] else ""},
        "shieldedNodes": {"enabled": True},
        "legacyAbac": {"enabled": False},
        # No basic auth (username/password stay empty) and no client certificate.
        "masterAuth": {"clientCertificateConfig": {"issueClientCertificate": False}},
        "databaseEncryption": {
            "state": "ENCRYPTED",
            "keyName": kms_key_path(project, region, str(values["kms_key_ring"]),
                                    str(values["kms_key"]))},
        "binaryAuthorization": {"evaluationMode": "PROJECT_SINGLETON_POLICY_ENFORCE"
                                if values["binary_authorization"] else "DISABLED"},
        "maintenancePolicy": {"window": {"recurringWindow": maintenance_window(
            str(values["maintenance_start"]), int(values["maintenance_hours"]),
            str(values["maintenance_recurrence"]))}},
        "defaultMaxPodsConstraint": {"maxPodsPerNode": str(
            _int(values["max_pods_per_node"], f"gke_max_pods_per_node of region {region}"))},
        "resourceLabels": {"app": "tai", "environment": str(values["environment"]),
                           "region": region},
        "nodePools": [_node_pool(values, str(name), pool)
                      for name, pool in sorted(values["node_pools"].items())],
    }
    if calico:
        # The older enforcement: Calico as an add-on; Dataplane V2 enforces NetworkPolicy itself
        # and is refused next to networkPolicy / the networkPolicyConfig add-on.
        addons["networkPolicyConfig"] = {"disabled": False}
        body["networkPolicy"] = {"enabled": True, "provider": "CALICO"}
    return body


CREATE_METHOD = "projects.locations.clusters.create"
POOL_CREATE_METHOD = "projects.locations.clusters.nodePools.create"


def node_pool_files(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Plan artifacts: the clusters.create body and one nodePools.create body per pool, each
    declaring its method so that tai_bundle checks it against the container v1 discovery
    document before writing anything."""
    def schema(method: str) -> dict[str, str]:
        return {"api": "container.v1", "method": method}

    out: list[dict[str, Any]] = [{"path": "cluster.json", "data": {"cluster": dict(cluster)},
                                  "gcp_schema": schema(CREATE_METHOD)}]
    out.extend({"path": f"node-pools/{pool['name']}.json", "data": {"nodePool": pool},
                "gcp_schema": schema(POOL_CREATE_METHOD)}
               for pool in cluster.get("nodePools") or [])
    return out
