# Copyright: tai-deploy contributors
"""The swap's inputs and vocabulary: the annotations and labels it writes, its settings and
targets (each checked, one sentence per problem), and SwapError."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from ..k8s_api import ApiError, KubeError
from ..services import IMAGE_VERSION, SLOTS

ANNOTATION = "bluegreen.tai-deploy.io/state"
# The release a rollback aborted: {"image", "slot", "at", "by"}.
ABORTED = "bluegreen.tai-deploy.io/aborted"
# A switch-back that failed for good: {"reason", "since"}; cleared by a successful rollback.
NEEDS_OPERATOR = "bluegreen.tai-deploy.io/needs-operator"
# A record whose time is further than this from the stored write's answer is re-timed.
RETIME_TOLERANCE = 0.1
# The chart's label telling the active Service from the preview one.
ROUTE_LABEL = "tai.example.com/route"
# KEDA holds a ScaledObject's target at this many replicas and stops scaling it while set.
KEDA_PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
DEFAULT_SLOTS = SLOTS
PROMOTED, ROLLED_BACK = "promoted", "rolled-back"
READY, PROGRESSING, FAILED, MISSING = "ready", "progressing", "failed", "missing"
# Annotations of the active Deployment that must not be copied to a new slot.
_NOT_COPIED = ("deployment.kubernetes.io/revision",
               "kubectl.kubernetes.io/last-applied-configuration")
_TAG = IMAGE_VERSION
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$", re.IGNORECASE)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


class SwapError(Exception):
    """The swap cannot go on; the message says what was (not) done and what to do.

    ``kind``: "" (any failure), "aborted" (an operator rolled the release back), "lease"
    (the region is locked by, or was taken over by, another operation), "switch_back"
    (a switch-back failed for good: the region needs an operator).
    """

    def __init__(self, message: str, *, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


def retryable(exc: Exception) -> bool:
    """5xx, 429 and connection failures may succeed when tried again; 4xx answers do not."""
    if isinstance(exc, ApiError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, KubeError) and "cannot reach the API server" in str(exc)


# ------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class Settings:
    """How slots are named and how long to wait; shared by every service of one call."""

    namespace: str
    slot_label: str = "slot"
    slots: tuple[str, str] = DEFAULT_SLOTS
    progress_deadline: float = 600.0
    scale_down_delay: float = 60.0
    poll_interval: float = 1.0
    conflict_attempts: int = 5
    preview_suffix: str = "-preview"
    # The switch-back: attempts on retryable answers, pauses doubling from switch_back_pause.
    switch_back_attempts: int = 6
    switch_back_pause: float = 0.1

    def problems(self) -> list[str]:
        out: list[str] = []
        if not _DNS_LABEL.match(self.namespace or ""):
            out.append(f"namespace {self.namespace!r} is not a valid namespace name")
        if not self.slot_label or not re.match(r"^([a-z0-9.-]+/)?[A-Za-z0-9_.-]{1,63}$",
                                               self.slot_label):
            out.append(f"slot_label {self.slot_label!r} is not a valid label key")
        if len(self.slots) != 2 or self.slots[0] == self.slots[1] or not all(
                s and _LABEL_VALUE.match(s) and _DNS_LABEL.match(s) for s in self.slots):
            out.append(f"slots must be two different lowercase names, got {list(self.slots)}")
        if self.progress_deadline <= 0:
            out.append(f"progress_deadline must be positive, got {self.progress_deadline}")
        if self.scale_down_delay < 0:
            out.append(f"scale_down_delay cannot be negative, got {self.scale_down_delay}")
        if self.poll_interval <= 0:
            out.append(f"poll_interval must be positive, got {self.poll_interval}")
        if self.conflict_attempts < 1:
            out.append(f"conflict_attempts must be at least 1, got {self.conflict_attempts}")
        if self.switch_back_attempts < 1:
            out.append(f"switch_back_attempts must be at least 1, got "
                       f"{self.switch_back_attempts}")
        return out


@dataclass(frozen=True)
class Target:
    """One service and, for prepare/promote (and as a guard for rollback), its new image."""

    service: str
    image: str | None = None
    version: str | None = None
    container: str | None = None

    def problems(self, *, need_image: bool) -> list[str]:
        out: list[str] = []
        if not _DNS_LABEL.match(self.service or ""):
            out.append(f"service {self.service!r} is not a valid Service name")
            return out
        if self.image and self.version:
            out.append(f"service {self.service}: give image or version, not both")
        if need_image and not (self.image or self.version):
            out.append(f"service {self.service}: the new image or version is required")
        if self.version is not None and not _TAG.match(self.version):
            out.append(f"service {self.service}: version {self.version!r} is not a valid "
                       "image tag (letters, digits, '_', '.', '-'; at most 128), optionally "
                       "with its digest (@sha256:<64 hex digits>)")
        if self.image is not None and not _IMAGE.match(self.image):
            out.append(f"service {self.service}: image {self.image!r} is not an image "
                       "reference")
        return out


def scaledobject_path(namespace: str, name: str | None = None) -> str:
    """REST path of KEDA ScaledObjects (keda.sh/v1alpha1) in ``namespace``."""
    path = f"/apis/keda.sh/v1alpha1/namespaces/{quote(namespace)}/scaledobjects"
    return path + f"/{quote(name)}" if name else path


def with_version(image: str, version: str) -> str:
    """The image reference with its tag and digest replaced by ``version`` (a tag, or
    tag@sha256:... which gives repository:tag@sha256:..., the reference that pins the digest)."""
    base = image.split("@", 1)[0]
    last = base.rsplit("/", 1)[-1]
    if ":" in last:
        base = base[: len(base) - len(last)] + last.split(":", 1)[0]
    return f"{base}:{version}"
