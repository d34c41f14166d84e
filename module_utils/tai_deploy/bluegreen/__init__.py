# Copyright: tai-deploy contributors
"""Blue-green swap of a TAI service: two Deployment slots behind one Service selector.

The cluster layout is the chart's (see the blue-green contract): per service ``<svc>``,
Deployments ``<svc>-blue`` and ``<svc>-green`` whose pods carry ``app: <svc>`` and
``slot: <slot>``; Service ``<svc>`` selects ``{app: <svc>, slot: <active>}`` and carries the
label ``slot: <active>``; Service ``<svc>-preview`` selects the other slot.

Operations (each idempotent, each resumable from what the cluster says, never from a file):

- ``prepare``: put the target image on the inactive slot at the active slot's replica count
  (creating that Deployment from the active one when the chart has not deployed it), point the
  preview Service at it, and wait until it is fully available: observedGeneration caught up,
  spec, updated, available and total replicas all equal to the desired count, no unavailable
  replica, and the controller not reporting ProgressDeadlineExceeded.
- ``promote``: ``prepare``, then switch the Service in ONE merge patch of ``spec.selector``
  (only the slot key), the ``slot`` label and a state annotation, sent with the
  resourceVersion just read, right after re-reading the new slot and finding it fully
  available. A 409 Conflict makes it re-read both and decide again. The selector is never
  empty or half-changed: the API server applies the patch atomically or not at all.
- ``rollback``: switch back to the slot recorded in the annotation (scaling it up and waiting
  first if it was already scaled down). Switching back is a single patch when the previous
  slot is still running, which is the case until ``finalize``.
- ``finalize``: once ``scale_down_delay`` has passed since the switch (recorded as an absolute
  time in the annotation), scale the slot that lost traffic to zero, after checking again
  that the Service does not select it, and mark the record scaled down.

KEDA: a ScaledObject scales its Deployment up to ``minReplicaCount`` even from 0, so it would
revive the idle slot. The autoscaling role names a slot's ScaledObject like the slot's
Deployment (``<svc>-<slot>``); when that ScaledObject exists, scaling the slot to zero first
sets its annotation ``autoscaling.keda.sh/paused-replicas: "0"``, and scaling a slot up
(prepare, rollback of a finalized switch) first removes that annotation. A 404 (no such
ScaledObject, or no KEDA in the cluster) means there is nothing to pause.

The annotation ``bluegreen.tai-deploy.io/state`` on the Service is written in the same patch
as the selector, so the record and the traffic can never disagree. Its times count from the
moment the API server stored that patch: when the answer came noticeably later than the
record's time (a slow write, retries), the record's times are moved to the answer's time.

A rollback also writes ``bluegreen.tai-deploy.io/aborted`` (the release that was aborted)
in the same patch: a rolling upgrade soaking that release stops at its next check, and an
upgrade to it again needs ``allow_aborted``. The switch-back is retried with backoff on
every retryable answer (5xx, 429, connection failures); when it still fails, the Service is
marked ``bluegreen.tai-deploy.io/needs-operator`` (when that write gets through) and the
error's first words say SWITCH-BACK FAILED. While the old slot runs, the switch-back comes
first, onto that slot as it stands; scaling it up to the active slot's count (an HPA may
have scaled the active slot up) comes after.

The package, one job a module: inputs (settings, targets, the annotations and labels, SwapError),
record (the state annotation), view (what the cluster shows: slots, readiness, outcomes), swap
(the operations, class BlueGreen) and run (the module's entry point). What callers import is
re-exported here.
"""

from __future__ import annotations

from .inputs import (
    ABORTED,
    ANNOTATION,
    DEFAULT_SLOTS,
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
from .record import Record
from .run import OPERATIONS, run
from .swap import BlueGreen
from .view import Outcome, Readiness, Slot, SlotWait, SwitchBack, View, container_image, readiness

__all__ = [
    "ABORTED", "ANNOTATION", "DEFAULT_SLOTS", "KEDA_PAUSED_REPLICAS", "NEEDS_OPERATOR",
    "OPERATIONS", "PROMOTED", "RETIME_TOLERANCE", "ROLLED_BACK", "ROUTE_LABEL", "BlueGreen",
    "Outcome", "Readiness", "Record", "Settings", "Slot", "SlotWait", "SwapError",
    "SwitchBack", "Target", "View", "container_image", "readiness", "retryable", "run",
    "scaledobject_path", "with_version",
]
