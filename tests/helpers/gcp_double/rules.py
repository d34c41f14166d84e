"""Cross-field rules of Google's APIs that the TEST DOUBLE enforces (a schema check cannot).

Each rule cites where the real API's behaviour is documented. A rule returns the message of the
400 the real API answers, or None.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def container_logging_exclusive(cluster: dict[str, Any]) -> str | None:
    """loggingService/monitoringService vs loggingConfig/monitoringConfig.

    The container API refuses both spellings in one cluster: terraform-google-modules/
    terraform-google-kubernetes-engine PR #1240 and hashicorp/terraform-provider-google issue
    #10805 quote the answer below.
    """
    legacy = any(cluster.get(k) for k in ("loggingService", "monitoringService"))
    new = any(cluster.get(k) for k in ("loggingConfig", "monitoringConfig"))
    if legacy and new:
        return ("Cannot specify logging_config or monitoring_config together with "
                "logging_service or monitoring_service.")
    return None


def container_update_logging_exclusive(update: dict[str, Any]) -> str | None:
    """The same rule for ClusterUpdate (desiredLoggingService with desiredLoggingConfig, ...)."""
    legacy = any(update.get(k) for k in ("desiredLoggingService", "desiredMonitoringService"))
    new = any(update.get(k) for k in ("desiredLoggingConfig", "desiredMonitoringConfig"))
    if legacy and new:
        return ("Cannot specify logging_config or monitoring_config together with "
                "logging_service or monitoring_service.")
    return None


def container_private_nodes_need_ip_aliases(cluster: dict[str, Any]) -> str | None:
    """Private nodes need a VPC-native cluster.

    https://cloud.google.com/kubernetes-engine/docs/how-to/legacy/network-isolation ("Private
    clusters must be VPC-native") and the Cluster reference (ipAllocationPolicy.useIpAliases).
    """
    private = ((cluster.get("privateClusterConfig") or {}).get("enablePrivateNodes")
               or ((cluster.get("networkConfig") or {}).get("defaultEnablePrivateNodes")))
    aliases = (cluster.get("ipAllocationPolicy") or {}).get("useIpAliases")
    if private and not aliases:
        return ("Private nodes require a VPC-native cluster: set "
                "ip_allocation_policy.use_ip_aliases to true.")
    return None


def container_network_policy_with_dataplane_v2(cluster: dict[str, Any]) -> str | None:
    """Calico network policy and Dataplane V2 are exclusive.

    https://cloud.google.com/kubernetes-engine/docs/concepts/dataplane-v2 ("GKE Dataplane V2 ...
    network policy enforcement is built in"; clusters with it cannot enable the Calico
    NetworkPolicy): the API answers the message below.
    """
    datapath = (cluster.get("networkConfig") or {}).get("datapathProvider")
    calico = ((cluster.get("networkPolicy") or {}).get("enabled")
              or (((cluster.get("addonsConfig") or {}).get("networkPolicyConfig") or {})
                  .get("disabled") is False))
    if datapath == "ADVANCED_DATAPATH" and calico:
        return ("Enabling NetworkPolicy for clusters with DatapathProvider=ADVANCED_DATAPATH is "
                "not allowed. Dataplane V2 will take care of network policy enforcement instead.")
    return None


CONTAINER_CLUSTER_RULES = (container_logging_exclusive, container_private_nodes_need_ip_aliases,
                           container_network_policy_with_dataplane_v2)


def global_external_address_value(address: dict[str, Any]) -> str | None:
    """A global EXTERNAL address is allocated by Google.

    compute globalAddresses.insert reference and
    https://cloud.google.com/vpc/docs/reserve-static-external-ip-address: a chosen external IP
    must come from the project's own public delegated prefix (bring your own IP,
    ``ipCollection``); otherwise Google picks it.
    """
    if (address.get("addressType", "EXTERNAL") == "EXTERNAL" and address.get("address")
            and not address.get("ipCollection")):
        return (f"Invalid value for field 'resource.address': '{address['address']}'. The "
                "specified IP address is not owned by the project; a global external address "
                "is allocated by Google unless it comes from a public delegated prefix "
                "(ipCollection).")
    return None


def subnet_ranges_do_not_overlap(subnet: dict[str, Any]) -> str | None:
    """Primary and secondary ranges of a subnet may not overlap (Subnetwork reference,
    secondaryIpRanges: "must not overlap with the primary ipCidrRange")."""
    ranges = [("ipCidrRange", subnet.get("ipCidrRange"))] + [
        (f"secondaryIpRanges[{i}]", r.get("ipCidrRange"))
        for i, r in enumerate(subnet.get("secondaryIpRanges") or [])]
    nets = [(n, ipaddress.ip_network(c)) for n, c in ranges if c]
    for i, (a, na) in enumerate(nets):
        for b, nb in nets[i + 1:]:
            if na.overlaps(nb):
                return (f"Invalid value for field 'resource.{b}': '{nb}'. The range overlaps "
                        f"with '{a}' ({na}).")
    return None


def crypto_key_rotation(key: dict[str, Any]) -> str | None:
    """cloudkms CryptoKey reference (rotationPeriod): "If rotation_period is set,
    next_rotation_time must also be set." """
    if key.get("rotationPeriod") and not key.get("nextRotationTime"):
        return "next_rotation_time must be set if rotation_period is set."
    return None


def storage_retention_policy_excludes_versioning(bucket: dict[str, Any]) -> str | None:
    """A bucket has a retention policy or Object Versioning, never both.

    https://cloud.google.com/storage/docs/bucket-lock ("Retention policies and Object
    Versioning are mutually exclusive features in Cloud Storage: for a given bucket, only one of
    them can be enabled at a time") and https://cloud.google.com/storage/docs/object-versioning
    ("Object Versioning cannot be enabled on a bucket that currently has a retention policy").
    The sentence below paraphrases those pages; the 400 is what the JSON API answers.
    """
    retention = (bucket.get("retentionPolicy") or {}).get("retentionPeriod")
    versioning = (bucket.get("versioning") or {}).get("enabled")
    if retention and versioning:
        return ("Object Versioning cannot be enabled on a bucket that has a retention policy: "
                "they are mutually exclusive.")
    return None
