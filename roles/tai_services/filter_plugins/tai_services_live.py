# Copyright: tai-deploy contributors
"""Filter tai_services_live_values: the chart values that keep what the cluster serves.

The blue-green swap changes a Service's selector and scales Deployments outside Helm. Before
an upgrade, the tai_services role reads the live Services and Deployments of the release and
this filter turns them into values layered over the planned ones, so that a re-converge

* keeps the slot that the live Service selects as the active slot (never flips traffic back),
* keeps the image the serving slot runs (a new version goes to the idle slot, then a swap),
* keeps a live idle slot (the rollback target) when the plan does not name a tag for it,
* keeps the replicas that the HPA or the swap set on existing Deployments.

Filter tai_services_placeholder_digests: the images of the values that still carry the
placeholder digest (module_utils/tai_deploy/inventory.py), which a production install refuses.

Pure functions, no Ansible import beyond the FilterModule hook; tests import them directly.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_MODULE_UTILS = str(Path(__file__).resolve().parents[3] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.inventory import combine, placeholder_digest_problems  # noqa: E402

# The chart's two slots, named once for the Python code (module_utils/tai_deploy/services.py);
# importable only once module_utils is on the path (above).
from tai_deploy.services import SLOTS, other_slot  # noqa: E402

_other = other_slot


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """repository, tag, digest of an image reference (tag/digest None when absent)."""
    ref, _, digest = image.partition("@")
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:], digest or None
    return ref, None, digest or None


def _live_slots(deployments: Sequence[Mapping[str, Any]], svc: str
                ) -> dict[str, dict[str, Any]]:
    """Per slot of a service: tag, digest and replicas of its live Deployment."""
    out: dict[str, dict[str, Any]] = {}
    for dep in deployments:
        meta = dep.get("metadata") or {}
        for slot in SLOTS:
            if meta.get("name") != f"{svc}-{slot}":
                continue
            containers = (((dep.get("spec") or {}).get("template") or {}).get("spec")
                          or {}).get("containers") or []
            main = next((c for c in containers if c.get("name") == svc),
                        containers[0] if containers else {})
            _, tag, digest = split_image(str(main.get("image", "")))
            entry: dict[str, Any] = {"replicas": int((dep.get("spec") or {}).get("replicas", 0))}
            if tag:
                entry["tag"] = tag
            if digest:
                entry["digest"] = digest
            out[slot] = entry
    return out


def live_values(
    planned: Mapping[str, Any],
    services: Sequence[Mapping[str, Any]],
    deployments: Sequence[Mapping[str, Any]],
    *,
    keep_idle_slot: bool = True,
    update_active_slot: bool = False,
) -> dict[str, Any]:
    """Values to layer over ``planned`` and notes for the operator.

    Returns {"values": {"services": {...}}, "notes": [...]}. With no live Service for a
    service (first install) the planned values decide and nothing is added for it.
    """
    overlay: dict[str, Any] = {}
    notes: list[str] = []
    live_services = {str((s.get("metadata") or {}).get("name")): s for s in services}
    for svc, want in sorted((planned.get("services") or {}).items()):
        live_svc = live_services.get(svc)
        if live_svc is None:
            continue
        selector = (live_svc.get("spec") or {}).get("selector") or {}
        active = selector.get("slot")
        if active not in SLOTS:
            notes.append(f"{svc}: the live Service selects no blue/green slot; the plan decides")
            continue
        planned_active = want.get("activeSlot", "blue")
        planned_slots = want.get("slots") or {}
        live = _live_slots(deployments, svc)
        out_slots: dict[str, dict[str, Any]] = {}
        if planned_active != active:
            notes.append(f"{svc}: the live Service serves slot {active}; keeping it active "
                         f"(the plan says {planned_active}; swap slots with the swap playbook)")
        for slot in SLOTS:
            plan_slot = planned_slots.get(slot) or {}
            live_slot = live.get(slot)
            plan_tag = plan_slot.get("tag")
            if live_slot is None or "tag" not in live_slot:
                continue
            entry: dict[str, Any] = {}
            if slot == active:
                if plan_tag and plan_tag != live_slot["tag"] and update_active_slot:
                    notes.append(f"{svc}: rolling the serving slot {slot} from "
                                 f"{live_slot['tag']} to {plan_tag} in place")
                    entry["replicas"] = live_slot["replicas"]
                else:
                    if plan_tag and plan_tag != live_slot["tag"]:
                        notes.append(
                            f"{svc}: slot {slot} serves {live_slot['tag']}; keeping it (the plan "
                            f"says {plan_tag}: deploy it to slot {_other(slot)} and swap)")
                    entry = dict(live_slot)
            elif plan_tag and plan_tag != live_slot["tag"]:
                # A new version for the idle slot: planned replicas, so the preview can be tested.
                continue
            elif plan_tag or keep_idle_slot:
                if not plan_tag:
                    notes.append(f"{svc}: keeping the idle slot {slot} ({live_slot['tag']}) as the "
                                 "rollback target")
                entry = dict(live_slot)
            else:
                # The plan names no tag for it: left out, Helm removes the Deployment.
                notes.append(f"{svc}: removing the idle slot {slot} ({live_slot['tag']})")
                continue
            entry = _differences(entry, plan_slot, want.get("replicas"))
            if entry:
                out_slots[slot] = entry
        svc_overlay: dict[str, Any] = {} if active == planned_active else {"activeSlot": active}
        if out_slots:
            svc_overlay["slots"] = out_slots
        if svc_overlay:
            overlay[svc] = svc_overlay
    return {"values": {"services": overlay} if overlay else {}, "notes": notes}


def _differences(entry: Mapping[str, Any], plan_slot: Mapping[str, Any],
                 planned_replicas: Any) -> dict[str, Any]:
    """What of a live slot differs from the plan. Only that goes into the overlay: a cluster
    that runs what was planned adds nothing, so the second apply renders the same values as
    the first (a copy of a planned value would change values.yaml and upgrade the release)."""
    planned = {"tag": plan_slot.get("tag"), "digest": plan_slot.get("digest"),
               "replicas": plan_slot.get("replicas", planned_replicas)}
    out = {k: v for k, v in entry.items() if k not in planned or planned[k] != v}
    if "tag" in out and "digest" not in entry and planned["digest"]:
        # The planned digest pins the planned tag, not the live one: keep none.
        out["digest"] = ""
    return out


def tai_services_live_values(planned: Mapping[str, Any], services: Sequence[Mapping[str, Any]],
                             deployments: Sequence[Mapping[str, Any]],
                             keep_idle_slot: bool = True,
                             update_active_slot: bool = False) -> dict[str, Any]:
    """live_values, plus ``effective``: the planned values with the overlay merged over them
    (recursive, as Ansible's ``combine(recursive=true)``), so that the role templates the
    planned values once rather than once for the overlay and again for the merge."""
    live = live_values(planned, services, deployments, keep_idle_slot=keep_idle_slot,
                       update_active_slot=update_active_slot)
    return {**live, "effective": combine(planned, live["values"])}


def tai_services_placeholder_digests(values: Mapping[str, Any], region: str,
                                     environment: str) -> list[str]:
    """One sentence per image with the placeholder digest, in production; [] elsewhere (a test
    environment pulls nothing)."""
    if environment != "production":
        return []
    return placeholder_digest_problems(values, region)


class FilterModule:
    """Ansible filter plugin hook."""

    def filters(self) -> dict[str, Any]:
        return {"tai_services_live_values": tai_services_live_values,
                "tai_services_placeholder_digests": tai_services_placeholder_digests}
