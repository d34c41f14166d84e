"""The Deployment controller of the Kubernetes API TEST DOUBLE.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). It plays the Deployment controller: a
new generation is observed after ``observe_delay``; new pods (created through admission:
admission.py) become ready after a delay (or never), the old template's ready pods stay until
the new ones are all ready, status counts and the Available/Progressing conditions follow,
ProgressDeadlineExceeded is reported after ``spec.progressDeadlineSeconds``. The pods answer
their health checks as their image's Behaviour says (behaviour.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .admission import Admission
from .behaviour import NOT_SERVING
from .common import _now_iso
from .pods import _Pods, _PodServer


class DeploymentController(Admission):
    """Deployments: their pods, the pods' health, their status and conditions."""

    # -- the Deployment controller -------------------------------------------------------

    def _reconcile(self, now: float) -> None:
        live: dict[str, set[str]] = {}
        for (plural, ns, name), svc in self._objects.items():
            if plural == "services" and not name.endswith("-preview"):
                for selected, _ in self._selected(ns, svc["spec"].get("selector") or {}):
                    live.setdefault(ns, set()).add(selected)
        for (kind, ns, name), obj in list(self._objects.items()):
            if kind != "deployments.apps":
                continue
            dep: dict[str, Any] = obj
            pods = self._pods.setdefault((ns, name), _Pods())
            self._observe(pods, dep, now)
            if pods.to_create:  # the ReplicaSet controller creates them, through admission
                pods.refusal = self._admission_refusal(
                    ns, (dep["spec"].get("template") or {}).get("metadata") or {})
                if pods.refusal is None:
                    pods.pending += [now + pods.create_delay] * pods.to_create
                    pods.to_create = 0
            desired = int(dep["spec"].get("replicas", 1))
            done = [t for t in pods.pending if t <= now]
            if done:
                pods.ready += len(done)
                pods.pending = [t for t in pods.pending if t > now]
            if pods.ready >= desired or desired == 0:
                pods.old_ready = 0
            total = pods.ready + len(pods.pending) + pods.old_ready
            if total > 0 and pods.server is None:
                pods.server = _PodServer(pods.answers).start()
            elif total == 0 and pods.server is not None:
                pods.server.stop()
                pods.server = None
            if name in live.get(ns, set()):
                pods.live_since = pods.live_since or now
            else:
                pods.live_since = None
            if pods.server is not None:
                pods.server.set(self._health(pods, now))
            status = self._status(pods, dep, desired, now)
            if status != dep.get("status"):
                dep["status"] = status
                dep["metadata"]["resourceVersion"] = str(next(self._rv))
                self.status_history.setdefault((ns, name), []).append((now, status))

    def _observe(self, pods: _Pods, dep: Mapping[str, Any], now: float) -> None:
        generation = int(dep["metadata"].get("generation", 1))
        if generation == pods.generation:
            return
        if pods.seen_generation != generation:
            pods.seen_generation, pods.seen_at = generation, now
        if now - pods.seen_at < self.observe_delay:
            return
        spec = dep["spec"]
        template = json.dumps(spec.get("template"), sort_keys=True)
        containers = spec.get("template", {}).get("spec", {}).get("containers") or [{}]
        image = str(containers[0].get("image", ""))
        desired = int(spec.get("replicas", 1))
        beh = self.behaviour(image)
        delay = beh.ready_delay if beh.ready_delay is not None else self.ready_delay
        ready_at = now + delay if beh.available else math.inf
        pods.create_delay = ready_at - now
        if template != pods.template:
            pods.old_ready += pods.ready
            pods.old_image = pods.image or image
            pods.ready, pods.pending, pods.to_create = 0, [], desired
            pods.template, pods.image = template, image
            pods.progress_started = now
        else:
            current = pods.ready + len(pods.pending) + pods.to_create
            if desired > current:
                pods.to_create += desired - current
                pods.progress_started = now
            elif desired < current:
                extra = current - desired
                for_create = min(extra, pods.to_create)
                pods.to_create -= for_create
                extra -= for_create
                drop = min(extra, len(pods.pending))
                pods.pending = pods.pending[: len(pods.pending) - drop]
                pods.ready -= extra - drop
        pods.generation = generation

    def _health(self, pods: _Pods, now: float) -> str:
        image = pods.image if pods.ready > 0 or not pods.old_image else pods.old_image
        beh = self.behaviour(image)
        status = beh.health
        if beh.flap_period and int(now / beh.flap_period) % 2:
            status = NOT_SERVING
        if (beh.fail_after is not None and pods.live_since is not None
                and now - pods.live_since >= beh.fail_after):
            status = NOT_SERVING
        return status

    def _condition(self, pods: _Pods, kind: str, status: str, *, reason: str, message: str,
                   now: float) -> dict[str, str]:
        previous = pods.conditions.get(kind)
        stamp = _now_iso(now)
        if previous and previous["status"] == status and previous["reason"] == reason:
            cond = dict(previous)
            if previous["message"] != message:
                cond.update({"message": message, "lastUpdateTime": stamp})
        else:
            cond = {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp if not previous or previous["status"] != status
                    else previous["lastTransitionTime"]}
        pods.conditions[kind] = cond
        return cond

    def _status(self, pods: _Pods, dep: Mapping[str, Any], desired: int,
                now: float) -> dict[str, Any]:
        name = dep["metadata"]["name"]
        rs = f"{name}-{abs(hash(pods.template)) % 10 ** 10:010d}"[:63]
        available = pods.ready + pods.old_ready
        updated = pods.ready + len(pods.pending)
        total = updated + pods.old_ready
        status: dict[str, Any] = {"observedGeneration": pods.generation}
        for key, value in (("replicas", total), ("updatedReplicas", updated),
                           ("readyReplicas", available), ("availableReplicas", available),
                           ("unavailableReplicas", max(0, total - available))):
            if value:
                status[key] = value  # the API server omits zero counts
        ok = available >= desired
        conds = [self._condition(pods, "Available", "True" if ok else "False",
                                 reason="MinimumReplicasAvailable" if ok else
                                 "MinimumReplicasUnavailable",
                                 message="Deployment has minimum availability." if ok else
                                 "Deployment does not have minimum availability.", now=now)]
        deadline = int(dep["spec"].get("progressDeadlineSeconds", 600))
        if (pods.pending or pods.to_create) and now - pods.progress_started > deadline:
            conds.append(self._condition(pods, "Progressing", "False",
                                         reason="ProgressDeadlineExceeded",
                                         message=f'ReplicaSet "{rs}" has timed out progressing.',
                                         now=now))
        elif not pods.pending and not pods.to_create and pods.old_ready == 0:
            conds.append(self._condition(pods, "Progressing", "True",
                                         reason="NewReplicaSetAvailable",
                                         message=f'ReplicaSet "{rs}" has successfully '
                                                 'progressed.', now=now))
        else:
            conds.append(self._condition(pods, "Progressing", "True", reason="ReplicaSetUpdated",
                                         message=f'ReplicaSet "{rs}" is progressing.', now=now))
        if pods.to_create and pods.refusal:
            # The ReplicaSet's ReplicaFailure condition, which the Deployment controller copies
            # onto the Deployment (API reference: DeploymentCondition; the message is the error
            # the pod creation met).
            conds.append(self._condition(pods, "ReplicaFailure", "True", reason="FailedCreate",
                                         message=pods.refusal, now=now))
        else:
            pods.conditions.pop("ReplicaFailure", None)
        status["conditions"] = conds
        return status
