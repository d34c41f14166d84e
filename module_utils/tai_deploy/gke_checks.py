"""Input checks of the hardened GKE cluster: ``problems(region, values) -> list[str]``.

One sentence per problem, naming the variable, the region, the value given and what is allowed,
so that the role stops before anything is rendered. ``values`` are the role's inputs as
``gke_body.cluster_body`` takes them. The node-pool size checks live with the other inventory
checks (``roles/gke/vars/main.yml``).

Sources of the rules: GKE control plane access
(https://cloud.google.com/kubernetes-engine/docs/concepts/network-isolation), maintenance windows
(https://cloud.google.com/kubernetes-engine/docs/concepts/maintenance-windows-and-exclusions:
"at least 48 hours of availability in a 32-day rolling window", occurrences of at least 4 hours),
Cloud KMS resource names (https://cloud.google.com/kms/docs/resource-hierarchy), Compute Engine
resource names (RFC 1035) and service account ids (6-30 characters).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .gke_body import CONTROL_PLANE_ACCESS, DATAPATH_PROVIDERS, MAINTENANCE_ANCHOR

RFC1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
KMS_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
SA_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SA_EMAIL = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]"
                      r"\.iam\.gserviceaccount\.com$")
HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAY = "(?:MO|TU|WE|TH|FR|SA|SU)"
RRULE = re.compile(rf"^FREQ=(DAILY|WEEKLY;BYDAY=({_DAY}(?:,{_DAY})*))$")
MAX_AUTHORIZED_NETWORKS = 50  # GKE's limit for the authorized networks of a cluster
MIN_HOURS_PER_32_DAYS = 48
MIN_WINDOW_HOURS = 4


def _say(var: str, region: str, value: Any, allowed: str) -> str:
    return f"{var} of region {region} is {value!r}; {allowed}."


def minimum_hours_in_32_days(recurrence: str, hours: int) -> int:
    """The least maintenance time any 32-day window holds (GKE wants 48 h)."""
    m = RRULE.match(recurrence)
    if not m:
        return 0
    if m.group(1) == "DAILY":
        return 32 * hours
    days = {DAYS.index(d) for d in (m.group(2) or "").split(",")}
    counts = []
    for offset in range(7):
        start = MAINTENANCE_ANCHOR + timedelta(days=offset)
        counts.append(sum(1 for i in range(32)
                          if (start + timedelta(days=i)).weekday() in days))
    return min(counts) * hours


def _authorized_networks(region: str, values: Mapping[str, Any]) -> list[str]:
    var = "gke_authorized_networks"
    out: list[str] = []
    networks = values.get("authorized_networks")
    if not isinstance(networks, list):
        return [_say(var, region, networks, "give a list of {cidr, name} items")]
    if len(networks) > MAX_AUTHORIZED_NETWORKS:
        out.append(_say(var, region, f"{len(networks)} networks",
                        f"GKE accepts at most {MAX_AUTHORIZED_NETWORKS}"))
    for item in networks:
        if not isinstance(item, Mapping) or "cidr" not in item:
            out.append(_say(var, region, item, "each item needs cidr (and a name), such as "
                            "{cidr: 203.0.113.0/24, name: office}"))
            continue
        cidr = str(item["cidr"])
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            out.append(_say(var, region, cidr, "each cidr must be an IPv4 network such as "
                            "203.0.113.0/24 with no host bits set"))
            continue
        if net.version != 4:
            out.append(_say(var, region, cidr, "GKE authorized networks are IPv4 CIDRs"))
        elif net.prefixlen == 0:
            out.append(_say(var, region, cidr, "0.0.0.0/0 opens the control plane to the whole "
                            "internet; list the networks of the operators and AWX instead"))
        name = str(item.get("name") or "")
        if len(name) > 100 or any(c in name for c in "\n\r"):
            out.append(_say(var, region, name, "a name is one line of at most 100 characters"))
    if (values.get("control_plane_access") == "authorized_networks" and not networks
            and values.get("environment") == "production"):
        out.append(_say(var, region, networks, "with gke_control_plane_access "
                        "authorized_networks a production cluster needs at least one network "
                        "(the operators' and AWX's egress CIDRs), or use the DNS endpoint "
                        "(gke_control_plane_access: dns)"))
    return out


def problems(region: str, values: Mapping[str, Any]) -> list[str]:
    """Every problem of the hardened-cluster inputs of one region, one sentence each."""
    out: list[str] = []
    access = values.get("control_plane_access")
    if access not in CONTROL_PLANE_ACCESS:
        out.append(_say("gke_control_plane_access", region, access,
                        f"allowed: {', '.join(CONTROL_PLANE_ACCESS)}"))
    out += _authorized_networks(region, values)
    provider = values.get("datapath_provider")
    if provider not in DATAPATH_PROVIDERS:
        out.append(_say("gke_datapath_provider", region, provider,
                        f"allowed: {', '.join(DATAPATH_PROVIDERS)}"))
    for var, key in (("tai_network_name", "network"), ("tai_subnet_name", "subnetwork"),
                     ("tai_pods_range_name", "pods_range"),
                     ("tai_services_range_name", "services_range")):
        if not RFC1035.match(str(values.get(key, ""))):
            out.append(_say(var, region, values.get(key), "a Compute Engine name is 1-63 "
                            "lowercase letters, digits and hyphens, starting with a letter"))
    for var, key in (("gke_kms_key_ring", "kms_key_ring"), ("gke_kms_key", "kms_key")):
        if not KMS_NAME.match(str(values.get(key, ""))):
            out.append(_say(var, region, values.get(key), "a Cloud KMS name is 1-63 letters, "
                            "digits, underscores and hyphens"))
    account = str(values.get("node_service_account", ""))
    if not (SA_ID.match(account) or SA_EMAIL.match(account)):
        out.append(_say("gke_node_service_account", region, values.get("node_service_account"),
                        "give a service account id of 6-30 lowercase letters, digits and "
                        "hyphens (tai-gke-nodes) or its e-mail "
                        "(<id>@<project>.iam.gserviceaccount.com)"))
    out += _maintenance(region, values)
    return out


def _maintenance(region: str, values: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    start = values.get("maintenance_start")
    if not HHMM.match(str(start)):
        out.append(_say("gke_maintenance_start", region, start,
                        "give a UTC time of day as HH:MM, such as 03:00"))
    hours = values.get("maintenance_hours")
    if isinstance(hours, bool) or not isinstance(hours, int) or not (
            MIN_WINDOW_HOURS <= hours <= 24):
        out.append(_say("gke_maintenance_hours", region, hours,
                        f"GKE needs windows of {MIN_WINDOW_HOURS} to 24 whole hours"))
        return out
    recurrence = str(values.get("maintenance_recurrence"))
    if not RRULE.match(recurrence):
        out.append(_say("gke_maintenance_recurrence", region, recurrence,
                        "give FREQ=DAILY or FREQ=WEEKLY;BYDAY=<days> with days among "
                        "MO,TU,WE,TH,FR,SA,SU"))
        return out
    least = minimum_hours_in_32_days(recurrence, hours)
    if least < MIN_HOURS_PER_32_DAYS:
        out.append(_say("gke_maintenance_recurrence", region,
                        f"{recurrence} for {hours} h", f"that leaves {least} h in some 32 days "
                        f"and GKE needs {MIN_HOURS_PER_32_DAYS} h: add days or hours"))
    return out
