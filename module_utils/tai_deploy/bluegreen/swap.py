# Copyright: tai-deploy contributors
"""The operations (BlueGreen): prepare, promote, rollback, finalize and status, each
idempotent and resumable from what the cluster says."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..bluegreen_lease import LeaseError, LeaseLock
from ..k8s_api import ApiError, KubeClient, KubeError, deployment_path, service_path
from ..poll import poll
from .inputs import (
    _NOT_COPIED,
    ABORTED,
    ANNOTATION,
    FAILED,
    KEDA_PAUSED_REPLICAS,
    NEEDS_OPERATOR,
    PROMOTED,
    RETIME_TOLERANCE,
    ROLLED_BACK,
    ROUTE_LABEL,
    Settings,
    SwapError,
    Target,
    retryable,
    scaledobject_path,
    with_version,
)
from .record import Record, _iso, _json_annotation
from .view import Outcome, Slot, SlotWait, SwitchBack, View, container_image, readiness


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and retryable(exc)


class BlueGreen:
    """Blue-green operations over one namespace of one cluster."""

    def __init__(self, client: KubeClient, settings: Settings, *, check_mode: bool = False,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 lease: LeaseLock | None = None, may_acquire: bool = False,
                 break_lease: bool = False, break_hint: str = "",
                 allow_aborted: bool = False) -> None:
        problems = settings.problems()
        if problems:
            raise SwapError("; ".join(problems))
        self.lease = lease
        self.may_acquire = may_acquire
        self.break_lease = break_lease
        self.break_hint = break_hint
        self.lease_notes: list[str] = []
        self._held = False
        self.allow_aborted = allow_aborted
        self.client = client
        self.s = settings
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.outcomes: dict[str, Outcome] = {}
        self.conflicts = 0

    # -- the lease ---------------------------------------------------------------------

    def need_lease(self) -> None:
        """Before a write: hold the region's lease (take it if this call may, else renew it).

        Called before every write (``Outcome.act``), so a run with nothing to do never
        touches the lease, and a run that lost it (an emergency rollback broke it) stops.
        """
        if self.lease is None:
            return
        try:
            if self._held:
                self.lease.renew(at_most_every=self.lease.duration / 6)
            elif self.may_acquire:
                self.lease_notes += self.lease.acquire(break_lease=self.break_lease,
                                                       how_to_break=self.break_hint)
            else:
                self.lease.renew()
        except LeaseError as exc:
            raise SwapError(str(exc), kind="lease") from exc
        self._held = True

    def renew_lease(self, *, at_most_every: float = 0.0) -> None:
        """Renew the lease while waiting, once this call holds it; SwapError if lost."""
        if self.lease is None or not self._held:
            return
        try:
            self.lease.renew(at_most_every=at_most_every)
        except LeaseError as exc:
            raise SwapError(str(exc), kind="lease") from exc

    def pause(self, seconds: float) -> None:
        """Sleep, renewing the lease (if held) often enough for it not to expire meanwhile."""
        # Not a poll: nothing is asked and nothing can time out; each step is the time left,
        # at most a third of the lease, and the lease is renewed after it, right up to the end.
        end = self.clock() + seconds
        while True:
            left = end - self.clock()
            if left <= 0:
                return
            step = left if self.lease is None else min(left, self.lease.duration / 3)
            self.sleep(step)
            self.renew_lease()

    # -- reading -------------------------------------------------------------------------

    def _svc_ref(self, name: str) -> str:
        return f"Service {self.s.namespace}/{name}"

    def _dep_name(self, service: str, slot: str) -> str:
        return f"{service}-{slot}"

    def read(self, target: Target) -> View:
        ns, key = self.s.namespace, self.s.slot_label
        service = self.client.get_or_none(service_path(ns, target.service))
        if service is None:
            raise SwapError(f"{self._svc_ref(target.service)} does not exist; deploy the chart "
                            "(playbooks/services.yml) before a blue-green upgrade")
        selector = service.get("spec", {}).get("selector") or {}
        active = selector.get(key)
        if active not in self.s.slots:
            raise SwapError(
                f"{self._svc_ref(target.service)} selects {json.dumps(selector, sort_keys=True)}"
                f", without a {key!r} key naming {' or '.join(self.s.slots)}; deploy the chart "
                "with two-slot support before a blue-green upgrade")
        inactive = self.s.slots[1] if active == self.s.slots[0] else self.s.slots[0]
        slots = {slot: Slot(slot, self._dep_name(target.service, slot),
                            self.client.get_or_none(
                                deployment_path(ns, self._dep_name(target.service, slot))))
                 for slot in self.s.slots}
        active_dep = slots[active].obj
        if active_dep is None:
            raise SwapError(f"{self._svc_ref(target.service)} selects slot {active} but "
                            f"Deployment {ns}/{slots[active].deployment} does not exist")
        container = self._container(target, active_dep)
        text = (service.get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
        record = Record.from_annotation(text, self._svc_ref(target.service)) if text else None
        preview = (self.client.get_or_none(
            service_path(ns, target.service + self.s.preview_suffix))
            if self.s.preview_suffix else None)
        return View(service, active, inactive, slots, record, preview, container)

    def _container(self, target: Target, dep: Mapping[str, Any]) -> str:
        names = [str(c.get("name")) for c in
                 dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])]
        wanted = target.container or target.service
        if wanted in names:
            return wanted
        if target.container is None and len(names) == 1:
            return names[0]
        raise SwapError(f"Deployment {self.s.namespace}/{dep['metadata']['name']} has no "
                        f"container {wanted!r} (containers: {', '.join(names)}); set container")

    def _target_image(self, target: Target, view: View) -> str:
        if target.image:
            return target.image
        assert target.version is not None
        return with_version(str(view.active_image), target.version)

    def _outcome(self, target: Target, view: View) -> Outcome:
        out = self.outcomes.get(target.service)
        if out is None:
            out = Outcome(target.service, before=view.summary(), after=view.summary(),
                          on_act=self.need_lease)
            self.outcomes[target.service] = out
        return out

    def _finish(self, out: Outcome, view: View) -> None:
        rec = view.record
        out.record = rec.as_dict() if rec else None
        out.slots = {n: s.summary(view.container) for n, s in view.slots.items()}
        out.soak_pending = bool(rec and rec.phase == PROMOTED and not rec.scaled_down
                                and rec.active == view.active)
        out.scale_down_pending = bool(rec and not rec.scaled_down and rec.active == view.active)

    # -- writing -------------------------------------------------------------------------

    def _clone(self, view: View, slot: str, image: str, replicas: int) -> dict[str, Any]:
        src = view.slots[view.active].obj
        assert src is not None
        key, name = self.s.slot_label, view.slots[slot].deployment
        spec = copy.deepcopy(src["spec"])
        match = spec.get("selector", {}).get("matchLabels") or {}
        if key not in match:
            raise SwapError(f"Deployment {self.s.namespace}/{src['metadata']['name']} selects "
                            f"pods without the {key!r} label; the chart's two-slot layout is "
                            "needed to create the other slot")
        match[key] = slot
        spec["template"].setdefault("metadata", {}).setdefault("labels", {})[key] = slot
        spec["replicas"] = replicas
        spec.pop("paused", None)
        for c in spec["template"]["spec"]["containers"]:
            if c.get("name") == view.container:
                c["image"] = image
        meta = src.get("metadata", {})
        labels = dict(meta.get("labels") or {})
        if key in labels:
            labels[key] = slot
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                       if k not in _NOT_COPIED}
        new_meta: dict[str, Any] = {"name": name, "namespace": self.s.namespace,
                                    "labels": labels}
        if annotations:
            new_meta["annotations"] = annotations
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": new_meta,
                "spec": spec}

    def _deploy_slot(self, out: Outcome, view: View, slot: str, image: str,
                     replicas: int) -> None:
        """Make Deployment <svc>-<slot> run ``image`` with ``replicas`` pods."""
        target = view.slots[slot]
        ns, name = self.s.namespace, target.deployment
        if replicas > 0:
            # Before anything scales the slot up: a paused ScaledObject would hold it at 0.
            self._keda_pause(out, target, paused=False)
        if target.obj is None:
            body = self._clone(view, slot, image, replicas)
            out.act(f"create Deployment {ns}/{name} from "
                    f"{view.slots[view.active].deployment} with {image}, {replicas} replicas")
            if not self.check_mode:
                target.obj = self.client.create(deployment_path(ns), body)
            else:
                target.obj = body
            return
        if target.obj.get("spec", {}).get("paused"):
            raise SwapError(f"Deployment {ns}/{name} is paused; resume it (kubectl rollout "
                            "resume) or fix it by hand, then run again")
        container = view.container

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            spec = current.get("spec", {})
            patch: dict[str, Any] = {}
            if int(spec.get("replicas", 1)) != replicas:
                patch.setdefault("spec", {})["replicas"] = replicas
            if container_image(current, container) != image:
                containers = copy.deepcopy(spec["template"]["spec"]["containers"])
                for c in containers:
                    if c.get("name") == container:
                        c["image"] = image
                patch.setdefault("spec", {})["template"] = {"spec": {"containers": containers}}
            return patch or None

        wanted = change(target.obj)
        if wanted is None:
            return
        parts = []
        if "replicas" in wanted.get("spec", {}):
            parts.append(f"{target.replicas} -> {replicas} replicas")
        if "template" in wanted.get("spec", {}):
            parts.append(f"{target.image(container)} -> {image}")
        out.act(f"update Deployment {ns}/{name}: {', '.join(parts)}")
        if self.check_mode:
            obj = copy.deepcopy(target.obj)
            obj["spec"]["replicas"] = replicas
            for c in obj["spec"]["template"]["spec"]["containers"]:
                if c.get("name") == container:
                    c["image"] = image
            target.obj = obj
            return
        target.obj, _, conflicts = self.client.update_with_retry(
            deployment_path(ns, name), change, attempts=self.s.conflict_attempts)
        self.conflicts += conflicts

    def _keda_pause(self, out: Outcome, slot: Slot, *, paused: bool) -> None:
        """Pause (paused-replicas "0") or resume the slot's ScaledObject, if it has one.

        The autoscaling role names it like the slot's Deployment. Only the annotation is
        changed, in a merge patch with the resourceVersion just read (null removes it).
        """
        ns, name = self.s.namespace, slot.deployment
        path = scaledobject_path(ns, name)
        want = "0" if paused else None

        def current_value(obj: Mapping[str, Any]) -> str | None:
            value = (obj.get("metadata", {}).get("annotations") or {}).get(KEDA_PAUSED_REPLICAS)
            return None if value is None else str(value)

        obj = self.client.get_or_none(path)
        if obj is None or current_value(obj) == want:
            return
        out.act(f"pause ScaledObject {ns}/{name} ({KEDA_PAUSED_REPLICAS}: \"0\")" if paused
                else f"resume ScaledObject {ns}/{name} (remove {KEDA_PAUSED_REPLICAS})")
        if self.check_mode:
            return

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            if current_value(current) == want:
                return None
            return {"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: want}}}

        try:
            _, _, conflicts = self.client.update_with_retry(
                path, change, attempts=self.s.conflict_attempts)
        except ApiError as exc:
            if exc.not_found:  # deleted in between: nothing left to pause
                return
            raise
        self.conflicts += conflicts

    def _point_preview(self, out: Outcome, view: View, slot: str) -> None:
        preview, key = view.preview, self.s.slot_label
        name = f"{view.service['metadata']['name']}{self.s.preview_suffix}"
        if preview is None:
            if self.s.preview_suffix:
                self._create_preview(out, view, name, slot)
            return
        selector = preview.get("spec", {}).get("selector") or {}
        if key not in selector:
            out.warnings.append(f"{self._svc_ref(name)} has no {key!r} selector; left alone")
            return
        if selector[key] == slot:
            return
        out.act(f"point {self._svc_ref(name)} at slot {slot}")
        if self.check_mode:
            return

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            if (current.get("spec", {}).get("selector") or {}).get(key) == slot:
                return None
            patch: dict[str, Any] = {"spec": {"selector": {key: slot}}}
            if key in (current.get("metadata", {}).get("labels") or {}):
                patch["metadata"] = {"labels": {key: slot}}
            return patch

        view.preview, _, conflicts = self.client.update_with_retry(
            service_path(self.s.namespace, name), change, attempts=self.s.conflict_attempts)
        self.conflicts += conflicts

    def _create_preview(self, out: Outcome, view: View, name: str, slot: str) -> None:
        """Make <svc>-preview when it is missing (the chart renders it always; a release
        installed by an older chart did so only when the other slot was deployed)."""
        key = self.s.slot_label
        src = view.service
        meta = src.get("metadata", {})
        labels = dict(meta.get("labels") or {})
        if key in labels:
            labels[key] = slot
        if ROUTE_LABEL in labels:
            labels[ROUTE_LABEL] = "preview"
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                       if k not in (*_NOT_COPIED, ANNOTATION)}
        ports = [{k: v for k, v in port.items() if k != "nodePort"}
                 for port in src.get("spec", {}).get("ports") or []]
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": self.s.namespace, "labels": labels,
                         **({"annotations": annotations} if annotations else {})},
            "spec": {"type": "ClusterIP", "ports": ports,
                     "selector": {**(src.get("spec", {}).get("selector") or {}), key: slot}}}
        out.act(f"create {self._svc_ref(name)} selecting slot {slot}")
        if not self.check_mode:
            view.preview = self.client.create(service_path(self.s.namespace), body)

    def _switch(self, out: Outcome, view: View, to: str, make_record: Callable[[float], Record],
                *, desired: int, image: str, annotations: Mapping[str, str | None] | None = None,
                announce: bool = True) -> Record:
        """The one patch that moves traffic: selector slot key, slot label, record.

        The record is made at each attempt, right before its patch is sent, and its times are
        moved to the answer's time when the write was stored noticeably later (a slow write,
        throttling retries): the scale-down delay counts from the stored switch. Annotations
        given as None are removed, when present.
        """
        key, ns = self.s.slot_label, self.s.namespace
        name = view.service["metadata"]["name"]
        dep = view.slots[to]
        if announce:
            out.act(f"switch {self._svc_ref(name)} from slot {view.active} to {to} ({image})")
        if self.check_mode:
            return make_record(self.clock())
        sent: list[Record] = []

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            selector = current.get("spec", {}).get("selector") or {}
            now_active = selector.get(key)
            present = current.get("metadata", {}).get("annotations") or {}
            ann = present.get(ANNOTATION)
            if now_active == to:
                stored = Record.from_annotation(ann, self._svc_ref(name)) if ann else None
                if stored is not None and stored.active_image == image:
                    sent.append(stored)
                    return None  # an earlier attempt (or a parallel run) already switched
                raise SwapError(f"{self._svc_ref(name)} was switched to slot {to} by somebody "
                                "else while this run was switching it; check it by hand")
            if now_active != view.active:
                raise SwapError(f"{self._svc_ref(name)} selects {now_active!r}, not "
                                f"{view.active!r} any more; check it by hand")
            # Re-read the new slot right before the patch: never switch to a slot that is
            # not fully available, however little time has passed since the wait.
            fresh = self.client.get(deployment_path(ns, dep.deployment))
            state = readiness(fresh, desired=desired, image=image, container=view.container)
            if not state.ready:
                raise SwapError(f"Deployment {ns}/{dep.deployment} {state.detail}; "
                                f"{self._svc_ref(name)} still selects {view.active}")
            record = make_record(self.clock())
            sent.append(record)
            extra = {k: v for k, v in (annotations or {}).items()
                     if v is not None or k in present}
            return {"metadata": {"labels": {key: to},
                                 "annotations": {**extra, ANNOTATION: record.to_annotation()}},
                    "spec": {"selector": {key: to}}}

        view.service, _, conflicts = self.client.update_with_retry(
            service_path(ns, name), change, attempts=self.s.conflict_attempts)
        self.conflicts += conflicts
        answered = self.clock()
        record = sent[-1]
        if answered - record.swapped_at > RETIME_TOLERANCE:
            record = self._retime(view, record, answered)
        return record

    def _retime(self, view: View, record: Record, stored: float) -> Record:
        """Move the record's switch time (and its scale-down time with it) to ``stored``."""
        name = view.service["metadata"]["name"]
        moved = dataclasses.replace(record, swapped_at=stored,
                                    scale_down_at=stored + record.scale_down_at
                                    - record.swapped_at)

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            ann = (current.get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
            now = Record.from_annotation(ann, self._svc_ref(name)) if ann else None
            # The annotation keeps milliseconds: compare as written.
            if (now is None or _iso(now.swapped_at) != _iso(record.swapped_at)
                    or now.active != record.active):
                return None
            return {"metadata": {"annotations": {ANNOTATION: moved.to_annotation()}}}

        view.service, _, conflicts = self.client.update_with_retry(
            service_path(self.s.namespace, name), change, attempts=self.s.conflict_attempts)
        self.conflicts += conflicts
        return moved

    def _switch_back(self, out: Outcome, view: View, rec: Record, count: int) -> Record:
        """Switch back, retried with backoff on every retryable answer; SwapError at the end."""
        name = view.service["metadata"]["name"]
        by = self.lease.holder if self.lease is not None else "rollback"
        annotations: dict[str, str | None] = {
            ABORTED: json.dumps({"image": rec.active_image, "slot": rec.active,
                                 "at": _iso(self.clock()), "by": by}, sort_keys=True),
            NEEDS_OPERATOR: None}

        def rolled_back(at: float) -> Record:
            return Record(ROLLED_BACK, rec.previous, rec.previous_image, rec.active,
                          rec.active_image, at, at + self.s.scale_down_delay)

        started, attempt = self.clock(), 0
        out.act(f"switch {self._svc_ref(name)} from slot {view.active} to {rec.previous} "
                f"({rec.previous_image})")

        def switch() -> Record:
            nonlocal attempt
            attempt += 1
            return self._switch(out, view, rec.previous, rolled_back, desired=count,
                                image=rec.previous_image, annotations=annotations,
                                announce=False)

        try:
            return poll(switch, lambda _: True, timeout=math.inf,
                        attempts=self.s.switch_back_attempts, interval=self.s.switch_back_pause,
                        backoff=2, max_interval=1.0, retry_on=(ApiError, KubeError),
                        retry_if=_retryable, clock=self.clock, sleep=self.sleep)
        except (ApiError, KubeError, SwapError) as exc:
            last: Exception = exc
        spent = self.clock() - started
        reason = (f"the switch-back to slot {rec.previous} failed after {attempt} "
                  f"attempt(s) over {spent:.1f} s: {last}")
        mark = self._mark_needs_operator(name, reason)
        raise SwapError(f"{self._svc_ref(name)} still selects slot {view.active} "
                        f"({rec.active_image}): {reason}; {mark}", kind="switch_back")

    def _mark_needs_operator(self, name: str, reason: str) -> str:
        """Best effort: a write that does not touch the selector may still get through."""
        body = {"metadata": {"annotations": {NEEDS_OPERATOR: json.dumps(
            {"reason": reason, "since": _iso(self.clock())}, sort_keys=True)}}}
        try:
            self.client.patch(service_path(self.s.namespace, name), body)
        except (ApiError, KubeError) as exc:
            return f"marking it {NEEDS_OPERATOR} failed too ({exc})"
        return f"marked it {NEEDS_OPERATOR}"

    def _mark_scaled_down(self, view: View) -> None:
        name = view.service["metadata"]["name"]
        rec = view.record
        assert rec is not None

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            ann = (current.get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
            now = Record.from_annotation(ann, self._svc_ref(name)) if ann else None
            if now is None or now.swapped_at != rec.swapped_at or now.scaled_down:
                return None
            done = dataclasses.replace(now, scaled_down=True)
            return {"metadata": {"annotations": {ANNOTATION: done.to_annotation()}}}

        view.service, _, conflicts = self.client.update_with_retry(
            service_path(self.s.namespace, name), change, attempts=self.s.conflict_attempts)
        self.conflicts += conflicts

    # -- waiting -------------------------------------------------------------------------

    def wait_available(self, waits: Sequence[SlotWait], why: str) -> None:
        """Wait until every slot of ``waits`` is fully available."""
        if self.check_mode or not waits:
            return
        pending = list(waits)

        def unavailable() -> list[SlotWait]:
            """The slots of ``pending`` not yet available (read again); SwapError if failed."""
            nonlocal pending
            still: list[SlotWait] = []
            failed: list[str] = []
            for item in pending:
                dep = item.view.slots[item.slot]
                dep.obj = self.client.get_or_none(deployment_path(self.s.namespace,
                                                                  dep.deployment))
                state = readiness(dep.obj, desired=item.replicas, image=item.image,
                                  container=item.view.container)
                if state.state == FAILED:
                    failed.append(f"Deployment {self.s.namespace}/{dep.deployment} "
                                  f"{state.detail}")
                elif not state.ready:
                    still.append(item)
            if failed:
                raise SwapError(f"{'; '.join(failed)}; {why}")
            pending = still
            return still

        def renew() -> None:
            if self.lease is not None:
                self.renew_lease(at_most_every=self.lease.duration / 6)

        def late(still: list[SlotWait]) -> list[SlotWait]:
            details = []
            for item in still:
                dep = item.view.slots[item.slot]
                state = readiness(dep.obj, desired=item.replicas, image=item.image,
                                  container=item.view.container)
                details.append(f"Deployment {self.s.namespace}/{dep.deployment} did not "
                               f"become fully available within "
                               f"{self.s.progress_deadline:g} s ({state.detail})")
            raise SwapError(f"{'; '.join(details)}; {why}")

        poll(unavailable, lambda still: not still, timeout=self.s.progress_deadline,
             interval=min(0.1, self.s.poll_interval), backoff=2,
             max_interval=self.s.poll_interval, on_miss=renew, stop_at_deadline=True,
             on_timeout=late, clock=self.clock, sleep=self.sleep)

    # -- operations ----------------------------------------------------------------------

    def status(self, targets: Iterable[Target]) -> list[Outcome]:
        result = []
        for target in targets:
            view = self.read(target)
            out = self._outcome(target, view)
            if target.image or target.version:
                out.target_image = self._target_image(target, view)
                out.promotion_needed = view.active_image != out.target_image
            self._finish(out, view)
            out.message = f"slot {view.active} is active with {view.active_image}"
            result.append(out)
        return result

    def _prepare_one(self, target: Target) -> tuple[Outcome, View, SlotWait | None]:
        view = self.read(target)
        out = self._outcome(target, view)
        image = self._target_image(target, view)
        out.target_image = image
        if view.active_image == image:
            rec = view.record
            if rec and not rec.scaled_down and rec.active == view.active:
                self.need_lease()  # a soak and a scale-down follow: the lock comes first
            out.promotion_needed = False
            self._point_preview(out, view, view.inactive)
            out.message = f"slot {view.active} already serves {image}"
            self._finish(out, view)
            return out, view, None
        out.promotion_needed = True
        self.need_lease()  # an upgrade follows: the lock comes first
        annotations = view.service.get("metadata", {}).get("annotations") or {}
        if annotations.get(NEEDS_OPERATOR):
            raise SwapError(f"{self._svc_ref(target.service)} is marked {NEEDS_OPERATOR}: "
                            f"{annotations[NEEDS_OPERATOR]}; check it, then switch it back with "
                            "playbooks/rollback.yml (which clears the mark) before upgrading")
        aborted = _json_annotation(annotations.get(ABORTED))
        if aborted.get("image") == image and not self.allow_aborted:
            raise SwapError(f"{image} was aborted on {self._svc_ref(target.service)} "
                            f"(at {aborted.get('at')}, by {aborted.get('by')}); upgrading to it "
                            "again needs an explicit override", kind="aborted_release")
        desired = view.slots[view.active].replicas
        if desired < 1:
            raise SwapError(f"Deployment {self.s.namespace}/{view.slots[view.active].deployment}"
                            f" (the active slot) has {desired} replicas; scale it up first")
        self._deploy_slot(out, view, view.inactive, image, desired)
        self._point_preview(out, view, view.inactive)
        out.after = view.summary()
        out.message = f"slot {view.inactive} prepared with {image}"
        return out, view, SlotWait(out, view, view.inactive, desired, image)

    def _prepare_all(self, targets: Sequence[Target], wait: bool
                     ) -> list[tuple[Outcome, View, int | None]]:
        prepared = [self._prepare_one(t) for t in targets]
        waits = [w for _, _, w in prepared if w is not None]
        if wait:
            names = ", ".join(sorted({w.view.service["metadata"]["name"] for w in waits}))
            self.wait_available(waits, f"no Service was switched ({names} keep their "
                                       "active slot)")
        for out, view, _ in prepared:
            out.after = view.summary()
            self._finish(out, view)
        return [(out, view, w.replicas if w else None) for out, view, w in prepared]

    def prepare(self, targets: Sequence[Target], *, wait: bool = True) -> list[Outcome]:
        """Deploy every target to its inactive slot, then wait for all of them together."""
        return [out for out, _, _ in self._prepare_all(targets, wait)]

    def promote(self, targets: Sequence[Target]) -> list[Outcome]:
        """Prepare and wait, then switch each Service that does not serve its image yet."""
        outcomes = []
        for out, view, desired in self._prepare_all(targets, True):
            image = str(out.target_image)
            if desired is not None:
                old, new = view.active, view.inactive
                old_image = str(view.active_image)

                def promoted(at: float, new: str = new, old: str = old, image: str = image,
                             old_image: str = old_image) -> Record:
                    return Record(PROMOTED, new, image, old, old_image, at,
                                  at + self.s.scale_down_delay)

                record = self._switch(out, view, new, promoted, desired=desired, image=image,
                                      annotations={ABORTED: None})
                view.active, view.inactive, view.record = new, old, record
                self._point_preview(out, view, old)
                out.message = f"switched from slot {old} to {new} ({image})"
            else:
                out.message = f"slot {view.active} serves {image}"
            out.promotion_needed = False
            out.after = view.summary()
            self._finish(out, view)
            outcomes.append(out)
        return outcomes

    def rollback(self, targets: Sequence[Target], *,
                 include_finalized: bool = True) -> list[Outcome]:
        """Switch each Service back to the slot it served before its last switch.

        While the old slot still runs and is fully available at its own count, the switch
        comes first, onto it as it stands; scaling it up to the active slot's count (an HPA
        may have scaled that one up) comes after. A slot already scaled down is scaled up and
        waited for first. With ``include_finalized=False`` a switch whose old slot was
        already scaled down (its soak completed) is left alone: the playbook's automatic
        rollback uses that. Every service is tried even when one switch-back fails.
        """
        outcomes: list[Outcome] = []
        waits: list[SlotWait] = []
        plans: list[SwitchBack] = []
        for target in targets:
            outcomes.append(self._plan_rollback(target, include_finalized, waits, plans))
        self.wait_available(waits, "no Service was switched back")
        failures: list[str] = []
        for plan in plans:
            out, view, rec = plan.outcome, plan.view, plan.record
            count, full = plan.replicas, plan.replicas_after
            try:
                record = self._switch_back(out, view, rec, count)
            except SwapError as exc:
                failures.append(str(exc))
                self._finish(out, view)
                continue
            view.active, view.inactive, view.record = rec.previous, rec.active, record
            out.rolled_back = True
            out.message = (f"switched back from slot {rec.active} ({rec.active_image}) to "
                           f"{rec.previous} ({rec.previous_image})")
            try:
                if full > count:  # traffic is back; now the capacity the active slot had
                    self._deploy_slot(out, view, rec.previous, rec.previous_image, full)
                self._point_preview(out, view, rec.active)
            except (ApiError, KubeError, SwapError) as exc:
                out.warnings.append(f"switched back, but a follow-up write failed: {exc}; "
                                    "run the rollback again to finish it")
            out.after = view.summary()
            self._finish(out, view)
        if failures:
            done = [o.service for o in outcomes if o.rolled_back]
            raise SwapError("SWITCH-BACK FAILED: " + "; ".join(failures)
                            + (f"; switched back: {', '.join(done)}" if done else ""),
                            kind="switch_back")
        return outcomes

    def _plan_rollback(self, target: Target, include_finalized: bool, waits: list[SlotWait],
                       plans: list[SwitchBack]) -> Outcome:
        """Decide one service's rollback: nothing, switch at once, or scale up and wait."""
        view = self.read(target)
        out = self._outcome(target, view)
        rec = view.record
        guard = self._target_image(target, view) if (target.image or target.version) \
            else None
        out.target_image = guard
        if rec is None:
            out.message = "no switch is recorded on the Service; nothing to roll back"
        elif guard is not None and view.active_image != guard:
            out.message = (f"slot {view.active} serves {view.active_image}, not {guard}; "
                           "nothing to roll back")
        elif rec.phase == ROLLED_BACK and rec.active == view.active:
            out.message = f"already rolled back to slot {view.active} ({rec.active_image})"
        elif rec.scaled_down and not include_finalized:
            out.message = (f"the switch to slot {view.active} was completed (slot "
                           f"{rec.previous} scaled down); left alone")
        elif rec.active != view.active:
            raise SwapError(f"{self._svc_ref(target.service)} selects slot {view.active} "
                            f"but its record says {rec.active}; it was changed by hand, "
                            "so rollback will not guess; fix the selector by hand")
        else:
            back = view.slots[rec.previous]
            if back.obj is None:
                raise SwapError(f"cannot roll back {self._svc_ref(target.service)}: "
                                f"Deployment {self.s.namespace}/{back.deployment} is gone")
            if back.image(view.container) != rec.previous_image:
                raise SwapError(
                    f"cannot roll back {self._svc_ref(target.service)}: Deployment "
                    f"{self.s.namespace}/{back.deployment} runs "
                    f"{back.image(view.container)}, not the recorded previous image "
                    f"{rec.previous_image}")
            full = max(back.replicas, view.slots[view.active].replicas, 1)
            as_it_stands = back.replicas > 0 and readiness(
                back.obj, desired=back.replicas, image=rec.previous_image,
                container=view.container).ready
            if as_it_stands:
                plans.append(SwitchBack(out, view, rec, back.replicas, full))
            else:
                if back.replicas != full:
                    self._deploy_slot(out, view, rec.previous, rec.previous_image, full)
                waits.append(SlotWait(out, view, rec.previous, full, rec.previous_image))
                plans.append(SwitchBack(out, view, rec, full, full))
        self._finish(out, view)
        return out

    def finalize(self, targets: Sequence[Target], *, wait: bool = True) -> list[Outcome]:
        """Scale the slot that lost traffic to zero once the scale-down delay has passed."""
        outcomes = []
        for target in targets:
            view = self.read(target)
            out = self._outcome(target, view)
            outcomes.append(out)
            rec = view.record
            guard = (self._target_image(target, view) if (target.image or target.version)
                     else None)
            # (Check mode: a promotion planned in the same run was not made, nothing to see.)
            if guard is not None and not self.check_mode and (rec is None
                                                              or rec.active_image != guard):
                mark = _json_annotation((view.service.get("metadata", {}).get("annotations")
                                         or {}).get(ABORTED))
                raise SwapError(f"the release {guard} was aborted in this region: "
                                f"{self._svc_ref(target.service)} serves slot {view.active} "
                                f"({view.active_image}) since a rollback (by "
                                f"{mark.get('by', 'somebody')} at {mark.get('at', '?')}); "
                                "nothing was scaled down", kind="aborted")
            if rec is None or rec.scaled_down:
                out.message = ("no switch is recorded on the Service; nothing to scale down"
                               if rec is None else f"slot {rec.previous} is already scaled down")
                self._finish(out, view)
                continue
            if rec.active != view.active:
                raise SwapError(f"{self._svc_ref(target.service)} selects slot {view.active} "
                                f"but its record says {rec.active}; not scaling anything down")
            remaining = rec.scale_down_at - self.clock()
            if remaining > 0 and not (wait and not self.check_mode):
                out.message = (f"slot {rec.previous} is scaled down after "
                               f"{_iso(rec.scale_down_at)} ({remaining:.0f} s from now)")
                if self.check_mode:
                    out.act(f"scale Deployment {self.s.namespace}/"
                            f"{view.slots[rec.previous].deployment} to 0 after the delay")
                self._finish(out, view)
                continue
            if remaining > 0:
                self.pause(remaining)
            self._scale_down(out, view, rec)
            out.message = f"slot {rec.previous} scaled down"
            out.after = view.summary()
            view.record = dataclasses.replace(rec, scaled_down=True)
            self._finish(out, view)
        return outcomes

    def _scale_down(self, out: Outcome, view: View, rec: Record) -> None:
        ns, key = self.s.namespace, self.s.slot_label
        name = view.service["metadata"]["name"]
        dep = view.slots[rec.previous]
        if not self.check_mode:
            # Never pause or scale down what the Service selects (re-read right before).
            svc = self.client.get(service_path(ns, name))
            if (svc.get("spec", {}).get("selector") or {}).get(key) == rec.previous:
                raise SwapError(f"{self._svc_ref(name)} selects slot {rec.previous} "
                                "again; not scaling it down")
        # KEDA would scale the idle slot back up to its minReplicaCount: pause it first.
        self._keda_pause(out, dep, paused=True)
        if dep.obj is not None and dep.replicas > 0:
            out.act(f"scale Deployment {ns}/{dep.deployment} to 0")
            if not self.check_mode:
                def change(current: dict[str, Any]) -> dict[str, Any] | None:
                    # The Service is re-read right before: never scale down what it selects.
                    svc = self.client.get(service_path(ns, name))
                    if (svc.get("spec", {}).get("selector") or {}).get(key) == rec.previous:
                        raise SwapError(f"{self._svc_ref(name)} selects slot {rec.previous} "
                                        "again; not scaling it down")
                    if int(current.get("spec", {}).get("replicas", 1)) == 0:
                        return None
                    return {"spec": {"replicas": 0}}

                dep.obj, _, conflicts = self.client.update_with_retry(
                    deployment_path(ns, dep.deployment), change,
                    attempts=self.s.conflict_attempts)
                self.conflicts += conflicts
            else:
                obj = copy.deepcopy(dep.obj)
                obj["spec"]["replicas"] = 0
                dep.obj = obj
        out.act(f"record the scale-down of slot {rec.previous} on {self._svc_ref(name)}")
        if not self.check_mode:
            self._mark_scaled_down(view)
