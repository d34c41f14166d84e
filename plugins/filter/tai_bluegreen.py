# Copyright: tai-deploy contributors
"""Filters of the blue-green role (roles/bluegreen): its inputs checked, its data shaped.

The rolling upgrade and the rollback hand their settings to these filters instead of building
lists and mappings in Jinja: the order of the regions, the gRPC targets of the health checks,
the Prometheus of each region, the slots the analysis judges. The input rules themselves live
with every other rule of the project (module_utils/tai_deploy/inventory.py); these are thin.
Pure functions; tests import them directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.inventory import (
    MISSING,
    check_rollback_inputs,
    check_upgrade_digests,
    check_upgrade_inputs,
    combine,
)
from tai_deploy.services import other_slot

# Lowest blast radius first: the tertiary region takes the least traffic, the primary the most.
TIER_RANK = {"tertiary": 0, "secondary": 1, "primary": 2}


def _given(value: Any) -> Any:
    return MISSING if value is None else value


def tai_upgrade_problems(versions: Any, known_services: Sequence[str], inventory: Sequence[str],
                         selected: Sequence[str], *, canary: Any = None,
                         region_order: Any = None) -> list[str]:
    """One sentence per problem of the rolling upgrade's inputs (None: not given)."""
    return check_upgrade_inputs(versions, known_services=list(known_services),
                                inventory=list(inventory), selected=list(selected),
                                canary=_given(canary), region_order=_given(region_order))


def tai_upgrade_digest_problems(versions: Any, region: str, environment: str,
                                allow_undigested: Any) -> list[str]:
    """One sentence per version that the plan's digest rule refuses in ``region``."""
    return check_upgrade_digests(versions, str(region), environment=str(environment),
                                 allow_undigested=_true(allow_undigested))


def tai_rollback_problems(services: Any, known_services: Sequence[str], limit: Any,
                          all_regions: Any) -> list[str]:
    """One sentence per problem of the rollback's inputs (limit None: no -l)."""
    return check_rollback_inputs(services, known_services=list(known_services),
                                 limited=limit is not None, all_regions=bool(all_regions))


def tai_upgrade_order(selected: Sequence[str], tiers: Mapping[str, Any], canary: Any = None,
                      region_order: Any = None) -> list[str]:
    """The selected regions in upgrade order: canary first, then by tier and name.

    ``tiers`` maps a region to its tai_region_tier; ``region_order`` (already checked), when
    given, is the order itself.
    """
    hosts = [str(h) for h in selected]
    if region_order is not None:
        return [str(r) for r in region_order if str(r) in hosts]
    ranked = sorted(hosts, key=lambda h: (TIER_RANK.get(str(tiers.get(h)), 9), h))
    first = str(canary) if canary is not None else (ranked[0] if ranked else None)
    return ([first] if first in hosts else []) + [h for h in ranked if h != first]


def tai_regions_after(order: Sequence[str], region: str) -> list[str]:
    """The regions after ``region`` in ``order`` (the regions not upgraded yet)."""
    hosts = [str(h) for h in order]
    return hosts[hosts.index(str(region)) + 1:] if str(region) in hosts else []


def tai_region_tiers(regions: Sequence[str], hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """Each region's tai_region_tier (None when unset)."""
    return {str(r): (hostvars[r] or {}).get("tai_region_tier") for r in regions}


def tai_grpc_target_options(tls: Any, tls_server_name: str, tls_ca_cert: Any = None,
                            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Options every health-check target of a blue-green operation carries."""
    out: dict[str, Any] = {"connect_timeout": 2.0, "rpc_timeout": 2.0}
    if _true(tls):
        out.update({"tls": True, "tls_server_name": tls_server_name})
    if tls_ca_cert is not None:
        out["tls_ca_cert"] = tls_ca_cert
    out.update(extra or {})
    return out


def _true(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


def tai_grpc_endpoints(services: Sequence[str], address: str,
                       overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per service, how its preview and active paths are reached.

    By default through the region's Istio ingress gateway at ``address``: the header
    x-tai-service chooses the service and x-tai-slot: preview the preview slot.
    ``overrides`` (tai_bluegreen_grpc_endpoints) is merged over it, recursively.
    """
    default = {str(svc): {
        "preview": {"address": address,
                    "metadata": {"x-tai-service": str(svc), "x-tai-slot": "preview"}},
        "active": {"address": address, "metadata": {"x-tai-service": str(svc)}},
    } for svc in services}
    merged: dict[str, Any] = combine(default, overrides or {})
    return merged


def tai_grpc_targets(services: Sequence[str], endpoints: Mapping[str, Any], path: str,
                     options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The grpc_health_check targets of ``services`` on ``path`` (preview or active)."""
    out: list[dict[str, Any]] = []
    for svc in services:
        ep = endpoints[svc][path]
        out.append({"name": f"{svc} (preview)" if path == "preview" else str(svc),
                    "address": ep["address"], "service": ep.get("service", ""),
                    "metadata": ep.get("metadata", {}), **options})
    return out


def tai_bluegreen_soaking(prepared: Mapping[str, Any] | None) -> list[str]:
    """Services switched and not yet finalized, after (or instead of) this run's switch."""
    if not prepared or "promotion_needed" not in prepared:
        return []
    out: list[str] = []
    for name in [*prepared.get("soak_pending", []), *prepared["promotion_needed"]]:
        if name not in out:
            out.append(name)
    return out


def tai_bluegreen_new_slots(soaking: Sequence[str], prepared: Mapping[str, Any]
                            ) -> list[dict[str, str]]:
    """Per service judged, the slot that runs (or is about to run) the new version."""
    needed = set(prepared.get("promotion_needed", []))
    active = prepared.get("active_slots", {})
    return [{"name": svc, "slot": other_slot(active[svc]) if svc in needed else active[svc]}
            for svc in soaking]


def tai_analysis_sources(regions: Sequence[str], hostvars: Mapping[str, Any]
                         ) -> list[dict[str, Any]]:
    """Each region's tai_analysis_prometheus, with its region named."""
    return [{**hostvars[r]["tai_analysis_prometheus"], "region": str(r)} for r in regions]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {f.__name__: f for f in (
            tai_upgrade_problems, tai_upgrade_digest_problems, tai_rollback_problems,
            tai_upgrade_order, tai_regions_after, tai_region_tiers,
            tai_grpc_target_options, tai_grpc_endpoints, tai_grpc_targets,
            tai_bluegreen_soaking, tai_bluegreen_new_slots, tai_analysis_sources)}
