"""Input checks of the project phase: network names and per-region subnet ranges.

``check_project(region, values) -> list[str]``: one sentence per problem, naming the variable,
the region, the value given and what is allowed. ``values`` holds the region's variables by
name plus ``all_subnet_ranges`` (region -> tai_region_subnet_ranges of every region of the
inventory), so that ranges are also checked across regions (VPC routes of one network must
never overlap). The validation play runs it through ``inventory.check_plan``; the project role's
own check task runs it again when the role is used alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

# Compute Engine resource names (RFC 1035): networks, subnets, routers, secondary ranges.
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
RANGE_KEYS = ("nodes", "pods", "services")
# Smallest useful sizes: GKE needs a /24 per node for pods (110 pods), /29 nodes at least.
_MAX_PREFIX = {"nodes": 29, "pods": 21, "services": 27}


def _networks(region: str, ranges: Any, errors: list[str]) -> dict[str, ipaddress.IPv4Network]:
    where = f"tai_region_subnet_ranges of region {region}"
    if not isinstance(ranges, Mapping):
        errors.append(f"{where} must be a mapping with nodes, pods and services CIDRs, got "
                      f"{ranges!r}.")
        return {}
    out: dict[str, ipaddress.IPv4Network] = {}
    missing = [k for k in RANGE_KEYS if not ranges.get(k)]
    if missing:
        errors.append(f"{where} lacks {', '.join(missing)}; give a CIDR for each of nodes, pods "
                      "and services.")
    unknown = sorted(set(ranges) - set(RANGE_KEYS))
    if unknown:
        errors.append(f"{where} has unknown keys {', '.join(map(str, unknown))}; allowed: "
                      "nodes, pods, services.")
    for key in RANGE_KEYS:
        value = ranges.get(key)
        if not value:
            continue
        try:
            net = ipaddress.IPv4Network(str(value), strict=True)
        except ValueError:
            errors.append(f"{where}.{key} must be an IPv4 CIDR such as 10.16.0.0/20 with no host "
                          f"bits set, got {value!r}.")
            continue
        if not net.is_private:
            errors.append(f"{where}.{key} must be a private range (RFC 1918), got {value}.")
        if net.prefixlen > _MAX_PREFIX[key]:
            errors.append(f"{where}.{key} is a /{net.prefixlen}, smaller than the /"
                          f"{_MAX_PREFIX[key]} GKE needs at least, got {value}.")
        out[key] = net
    keys = list(out)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if out[a].overlaps(out[b]):
                errors.append(f"{where}: {a} {out[a]} overlaps {b} {out[b]}; the three ranges of "
                              "a subnet must be disjoint.")
    return out


def check_project(region: str, values: Mapping[str, Any]) -> list[str]:
    """One sentence per problem of the project-phase inputs of ``region``."""
    errors: list[str] = []
    for name in ("tai_network_name", "tai_subnet_name", "tai_pods_range_name",
                 "tai_services_range_name"):
        value = values.get(name)
        if not isinstance(value, str) or not _NAME.match(value):
            errors.append(f"{name} of region {region} must be a Compute Engine name (1-63 "
                          f"lowercase letters, digits and hyphens, starting with a letter), got "
                          f"{value!r}.")
    if values.get("tai_pods_range_name") == values.get("tai_services_range_name"):
        errors.append(f"tai_pods_range_name and tai_services_range_name of region {region} are "
                      f"both {values.get('tai_pods_range_name')!r}; the secondary ranges need "
                      "two names.")
    mine = _networks(region, values.get("tai_region_subnet_ranges"), errors)
    others: Mapping[str, Any] = values.get("all_subnet_ranges") or {}
    for other, ranges in sorted(others.items()):
        if other == region or not isinstance(ranges, Mapping):
            continue
        for key, net in mine.items():
            for okey in RANGE_KEYS:
                try:
                    onet = ipaddress.IPv4Network(str(ranges.get(okey)), strict=True)
                except ValueError:
                    continue  # reported when that region is checked
                if net.overlaps(onet):
                    errors.append(f"tai_region_subnet_ranges.{key} of region {region} ({net}) "
                                  f"overlaps {okey} of region {other} ({onet}); regions share "
                                  "one VPC, so their ranges must be disjoint.")
    return errors
