# Copyright: tai-deploy contributors
"""Reading the cluster: a service's two slots as the API server reports them (View, Slot),
whether a Deployment is fully available (readiness), and what an operation did (Outcome,
SlotWait, SwitchBack)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .inputs import FAILED, MISSING, PROGRESSING, READY
from .record import Record


@dataclass(frozen=True)
class Readiness:
    state: str
    detail: str

    @property
    def ready(self) -> bool:
        return self.state == READY


def container_image(dep: Mapping[str, Any], container: str) -> str | None:
    for c in dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        if c.get("name") == container:
            return str(c.get("image"))
    return None


def readiness(dep: Mapping[str, Any] | None, *, desired: int, image: str,
              container: str) -> Readiness:
    """Whether a Deployment is fully available with ``image`` at exactly ``desired`` pods."""
    if dep is None:
        return Readiness(MISSING, "does not exist")
    meta, spec, status = dep.get("metadata", {}), dep.get("spec", {}), dep.get("status") or {}
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    running = container_image(dep, container)
    for cond in status.get("conditions") or []:
        if (cond.get("type") == "Progressing" and cond.get("status") == "False"
                and cond.get("reason") == "ProgressDeadlineExceeded" and observed >= generation):
            return Readiness(FAILED, f"ProgressDeadlineExceeded: {cond.get('message', '')}")
    if running != image:
        return Readiness(PROGRESSING, f"runs {running}, not {image}")
    if spec.get("paused"):
        return Readiness(FAILED, "is paused (kubectl rollout resume)")
    if observed < generation:
        return Readiness(PROGRESSING, f"generation {generation} not observed yet "
                                      f"(observed {observed})")
    want = int(spec.get("replicas", 1))
    if want != desired:
        return Readiness(PROGRESSING, f"wants {want} replicas, not {desired}")
    counts = {k: int(status.get(k) or 0) for k in
              ("replicas", "updatedReplicas", "availableReplicas", "readyReplicas",
               "unavailableReplicas")}
    text = (f"{counts['updatedReplicas']} updated, {counts['availableReplicas']} available "
            f"of {desired}, {counts['replicas']} pods in total")
    if desired < 1:
        return Readiness(PROGRESSING, "has no replicas")
    if (counts["updatedReplicas"] == counts["availableReplicas"] == counts["replicas"] == desired
            and counts["unavailableReplicas"] == 0):
        return Readiness(READY, text)
    return Readiness(PROGRESSING, text)


@dataclass
class Slot:
    name: str
    deployment: str
    obj: dict[str, Any] | None

    def image(self, container: str) -> str | None:
        return container_image(self.obj, container) if self.obj else None

    @property
    def replicas(self) -> int:
        return int((self.obj or {}).get("spec", {}).get("replicas", 1)) if self.obj else 0

    def summary(self, container: str) -> dict[str, Any]:
        status = (self.obj or {}).get("status") or {}
        return {"deployment": self.deployment, "exists": self.obj is not None,
                "image": self.image(container), "replicas": self.replicas,
                "available_replicas": int(status.get("availableReplicas") or 0)}


@dataclass
class View:
    """A Service, its two slots and its preview Service, as read from the cluster."""

    service: dict[str, Any]
    active: str
    inactive: str
    slots: dict[str, Slot]
    record: Record | None
    preview: dict[str, Any] | None
    container: str

    @property
    def active_image(self) -> str | None:
        return self.slots[self.active].image(self.container)

    def summary(self) -> dict[str, Any]:
        return {"active_slot": self.active, "image": self.active_image,
                "slots": {n: {"image": s.image(self.container), "replicas": s.replicas}
                          for n, s in self.slots.items()}}


@dataclass
class Outcome:
    """What one call did (or would do, in check mode) to one service."""

    service: str
    changed: bool = False
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    target_image: str | None = None
    promotion_needed: bool = False
    soak_pending: bool = False
    rolled_back: bool = False
    scale_down_pending: bool = False
    record: dict[str, Any] | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    # Called before each change is made (the lease is taken before any write).
    on_act: Callable[[], None] | None = field(default=None, repr=False)

    def act(self, text: str) -> None:
        if self.on_act is not None:
            self.on_act()
        self.changed = True
        self.actions.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed, "actions": self.actions, "warnings": self.warnings,
            "active_slot": self.after.get("active_slot"), "image": self.after.get("image"),
            "target_image": self.target_image, "promotion_needed": self.promotion_needed,
            "soak_pending": self.soak_pending, "rolled_back": self.rolled_back,
            "scale_down_pending": self.scale_down_pending, "record": self.record,
            "slots": self.slots, "message": self.message,
        }


@dataclass(frozen=True)
class SlotWait:
    """One Deployment to wait for: the slot of a service's view, at its desired replicas and
    image, for the operation's outcome."""

    outcome: Outcome
    view: View
    slot: str
    replicas: int
    image: str


@dataclass(frozen=True)
class SwitchBack:
    """One planned switch-back: onto ``record.previous`` at ``replicas``, then scaled up to
    ``replicas_after`` (the active slot's count) once traffic is back."""

    outcome: Outcome
    view: View
    record: Record
    replicas: int
    replicas_after: int
