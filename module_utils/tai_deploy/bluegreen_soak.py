"""The soak window of a blue-green upgrade: health checks, watching for an abort, the lease.

One call checks the active path every ``interval`` seconds for ``seconds`` and ends at the
first unhealthy answer. Before each check it reads the soaking Services: when an operator
rolled the release back (the record is not that promotion any more, or the release is
marked aborted), the soak stops with SwapError(kind="aborted") and the upgrade with it.
It also renews the region's lease, so a lock broken by an emergency rollback stops it too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .bluegreen import ABORTED, ANNOTATION, PROMOTED, BlueGreen, Record, SwapError, Target
from .k8s_api import service_path


@dataclass
class SoakResult:
    healthy: bool
    message: str
    checks: int
    elapsed: float
    report: dict[str, Any]


def _aborted(svc: Mapping[str, Any], soaking: Record, slot_label: str) -> str | None:
    """Why the promotion being soaked is no longer in place, or None."""
    meta = svc.get("metadata", {})
    ann = meta.get("annotations") or {}
    selected = (svc.get("spec", {}).get("selector") or {}).get(slot_label)
    try:
        mark = json.loads(ann.get(ABORTED) or "{}")
    except ValueError:
        mark = {}
    ref = f"Service {meta.get('namespace')}/{meta.get('name')}"
    if isinstance(mark, dict) and mark.get("image") == soaking.active_image:
        return (f"the release {soaking.active_image} was aborted in this region (by "
                f"{mark.get('by')} at {mark.get('at')}; {ref} selects slot {selected})")
    text = ann.get(ANNOTATION)
    record = Record.from_annotation(text, ref) if text else None
    if (record is None or record.phase != PROMOTED or record.swapped_at != soaking.swapped_at
            or selected != soaking.active):
        return (f"the release {soaking.active_image} was aborted in this region: {ref} was "
                f"switched to slot {selected} by somebody else during the soak")
    return None


class SoakWatch:
    """What a soak watches between two checks: an operator's rollback, and the lease.

    Built once the services are switched: ``check`` raises SwapError(kind="aborted") when a
    rollback replaced a promotion being soaked, and SwapError(kind="lease") when the
    region's lease was lost (renewing it otherwise). The soaked step and the analysis gate
    (library/tai_analysis_gate.py), which both wait through the soak window, call it.
    ``watch_promotion=False`` (before the switch: nothing promoted yet) only renews the lease.
    """

    def __init__(self, bg: BlueGreen, services: Sequence[str], *,
                 watch_promotion: bool = True) -> None:
        self.bg = bg
        self.soaking: dict[str, Record] = {}
        for name in services if watch_promotion else ():
            view = bg.read(Target(name))
            rec = view.record
            if rec is None or rec.phase != PROMOTED or rec.active != view.active:
                raise SwapError(f"the release being upgraded to was aborted in this region: "
                                f"Service {bg.s.namespace}/{name} is not on a promotion any "
                                f"more (slot {view.active})", kind="aborted")
            self.soaking[name] = rec

    def check(self) -> None:
        for name, rec in self.soaking.items():
            problem = _aborted(self.bg.client.get(service_path(self.bg.s.namespace, name)), rec,
                               self.bg.s.slot_label)
            if problem:
                raise SwapError(problem, kind="aborted")
        self.bg.need_lease()


def soak(bg: BlueGreen, services: Sequence[str], health_targets: Sequence[Mapping[str, Any]],
         *, seconds: float, interval: float, clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep) -> SoakResult:
    """Soak ``services`` (switched, not finalized) while checking ``health_targets``.

    ``seconds`` 0 is one round: the abort mark, the lease and one health check.
    """
    # Imported here: the analysis gate imports this module for SoakWatch alone, and grpc's
    # import is the largest part of its start-up (about 60 ms of 110 ms on an idle machine).
    from .grpc_health import ConfigError, WaitPolicy, run_health_checks, targets_from_params

    try:
        targets = targets_from_params({"targets": list(health_targets)})
    except ConfigError as exc:
        raise SwapError(f"health_targets: {exc}") from exc
    watch = SoakWatch(bg, services)
    started, checks = clock(), 0
    # Not a poll: the soak lasts its time and passes when that is over; a bad check ends it.
    while True:
        watch.check()
        report = run_health_checks(targets, WaitPolicy())
        checks += 1
        elapsed = clock() - started
        if not report.healthy:
            return SoakResult(False, report.message(), checks, elapsed, report.as_dict())
        if elapsed >= seconds:
            return SoakResult(True, f"{checks} check(s) over {elapsed:.1f} s: "
                              f"{report.message()}", checks, elapsed, report.as_dict())
        sleep(min(interval, max(seconds - elapsed, 0.0)))
