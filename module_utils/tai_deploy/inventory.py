"""Checks of a region's inventory variables, each failure phrased as one sentence.

The first play of every playbook runs these before any role, so that a typo in host_vars or
in ``-e`` stops the run with a sentence naming the variable, the region and the fix, instead of
a template traceback halfway through a deployment.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TIERS = ("primary", "secondary", "tertiary")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_K8S_MINOR = re.compile(r"^1\.[0-9]{2}$")
MISSING = object()
BOOLS = ("true", "false", "yes", "no")


@dataclass(frozen=True)
class RegionVars:
    """What every region must define (host_vars) or inherit (group_vars)."""

    region: str
    values: Mapping[str, Any]

    def get(self, name: str) -> Any:
        return self.values.get(name, MISSING)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _where(region: str, name: str) -> str:
    return f"{name} of region {region}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_region(rv: RegionVars) -> list[str]:
    """Return one sentence per problem; an empty list means the region is usable."""
    r = rv.region
    errors: list[str] = []

    def require(name: str) -> Any:
        value = rv.get(name)
        if value is MISSING or value is None:
            errors.append(f"Required variable {name} is not set for region {r}; define it in "
                          f"inventories/<env>/host_vars/{r}.yml or the group_vars of its group.")
            return MISSING
        return value

    if not _REGION.match(r):
        errors.append(f"Inventory host {r!r} is not a GCP region name such as europe-west1.")

    project = require("tai_gcp_project")
    if project is not MISSING and (not isinstance(project, str) or not _PROJECT.match(project)):
        errors.append(f"{_where(r, 'tai_gcp_project')} must be a GCP project id (6-30 lowercase "
                      f"letters, digits, hyphens), got {project!r}.")

    apply = require("tai_apply")
    # `-e tai_apply=true` arrives as a string; accept the spellings that `| bool` reads.
    if apply is not MISSING and not isinstance(apply, bool) and str(apply).lower() not in BOOLS:
        errors.append(f"tai_apply must be true or false, got {_type_name(apply)} {apply!r}; "
                      "pass it as -e tai_apply=true or -e '{\"tai_apply\": true}'.")

    k8s = require("tai_kubernetes_version")
    if k8s is not MISSING and (not isinstance(k8s, str) or not _K8S_MINOR.match(k8s)):
        errors.append(f"tai_kubernetes_version must be a quoted minor version such as \"1.34\", "
                      f"got {_type_name(k8s)} {k8s!r}.")

    tier = require("tai_region_tier")
    if tier is not MISSING and tier not in TIERS:
        errors.append(f"{_where(r, 'tai_region_tier')} must be one of {', '.join(TIERS)}, "
                      f"got {tier!r}.")

    zones = require("tai_region_zones")
    if zones is not MISSING:
        if not isinstance(zones, list) or not zones or not all(isinstance(z, str) for z in zones):
            errors.append(f"{_where(r, 'tai_region_zones')} must be a non-empty list of zone "
                          f"names, got {_type_name(zones)} {zones!r}.")
        else:
            foreign = [z for z in zones if not re.match(rf"^{re.escape(r)}-[a-z]$", z)]
            if foreign:
                errors.append(f"{_where(r, 'tai_region_zones')} lists zones outside the region: "
                              f"{', '.join(foreign)}.")
            if len(set(zones)) != len(zones):
                errors.append(f"{_where(r, 'tai_region_zones')} lists a zone twice.")

    # Optional: Google allocates the address; a value kept here is checked against it at apply.
    address = rv.get("tai_region_lb_address")
    if address not in (MISSING, None, ""):
        try:
            ip = ipaddress.IPv4Address(str(address))
            if not isinstance(address, str) or ip.is_private or ip.is_loopback:
                raise ValueError
        except ValueError:
            errors.append(f"{_where(r, 'tai_region_lb_address')} must be a public IPv4 address, "
                          f"got {address!r}.")

    geo = require("tai_region_dns_geo_location")
    if geo is not MISSING and (not isinstance(geo, str) or not _REGION.match(geo)):
        errors.append(f"{_where(r, 'tai_region_dns_geo_location')} must be a GCP region name "
                      f"(Cloud DNS geo policies route by region), got {geo!r}.")

    errors.extend(check_node_pools(r, rv.get("gke_node_pools")))
    return errors


def check_node_pools(region: str, pools: Any) -> list[str]:
    """Node pool sizes: integers, 0 <= min <= initial <= max."""
    if pools is MISSING or pools is None:
        return []
    if not isinstance(pools, dict):
        return [f"gke_node_pools of region {region} must be a mapping of pool name to settings, "
                f"got {_type_name(pools)}."]
    errors: list[str] = []
    for name, pool in sorted(pools.items()):
        if not isinstance(pool, dict):
            errors.append(f"gke_node_pools.{name} of region {region} must be a mapping, "
                          f"got {_type_name(pool)}.")
            continue
        lo, hi = pool.get("min_nodes"), pool.get("max_nodes")
        for key, value in (("min_nodes", lo), ("max_nodes", hi)):
            if value is not None and (not _is_int(value) or value < 0):
                errors.append(f"gke_node_pools.{name}.{key} of region {region} must be a "
                              f"non-negative integer, got {value!r}.")
        if isinstance(lo, int) and isinstance(hi, int) and _is_int(lo) and _is_int(hi) \
                and lo > hi:
            errors.append(f"gke_node_pools.{name} of region {region} has min_nodes {lo} greater "
                          f"than max_nodes {hi}.")
    return errors
