"""One blue-green operation at a time per cluster and namespace: a coordination.k8s.io/v1 Lease.

The Lease (``tai-bluegreen`` in the services' namespace) is the lock that client-go's leader
election also uses: ``spec.holderIdentity`` names the holder, ``acquireTime`` says since
when, ``renewTime`` + ``leaseDurationSeconds`` when it expires unless renewed. Every write
carries the resourceVersion just read, so two operators racing for it cannot both win: the
API server refuses the second write with 409 and the loser reads the new holder.

- ``acquire``: create the Lease, or take it when it is free (no holder), expired (its holder
  crashed and stopped renewing it), held by a process of this machine that is gone (a
  controller killed mid-run: no need to wait for the expiry), or when told to break it (an
  emergency rollback). Otherwise refuse, naming the holder and since when.
- ``renew``: push ``renewTime`` forward; refuse if somebody else holds it now (it was broken).
- ``release``: clear the holder, only if it is still ours.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .k8s_api import ApiError, KubeClient

LEASE_NAME = "tai-bluegreen"


class LeaseError(Exception):
    """The lease cannot be taken or was lost; the message names the holder."""


def lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"
    return path + f"/{quote(name)}" if name else path


def micro_time(ts: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds), as Leases carry."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _playbook_pid() -> int:
    """The pid of the ansible-playbook process this module runs under (else our own)."""
    # Ansible's workers are forks of ansible-playbook (same command line), one per task:
    # the outermost match is the run itself.
    pid, found = os.getpid(), os.getpid()
    for _ in range(16):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        except OSError:
            break
        if any(part.endswith((b"ansible-playbook", b"/ansible")) for part in cmdline[:2]):
            found = pid
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent <= 1:
            break
        pid = parent
    return found


def default_holder(purpose: str) -> str:
    """``user@host <purpose> pid N``: unique per run, stable across the tasks of one run."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} {purpose} pid {_playbook_pid()}"


def _holder_gone(holder: str) -> bool:
    """A holder of this machine whose process no longer runs (killed, crashed)."""
    parts = holder.split()
    if len(parts) < 4 or parts[-2] != "pid" or not parts[-1].isdigit():
        return False
    if parts[0].rsplit("@", 1)[-1] != socket.gethostname():
        return False
    try:
        os.kill(int(parts[-1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class LeaseLock:
    """The blue-green Lease of one namespace, held as ``holder``."""

    client: KubeClient
    namespace: str
    holder: str
    duration: int = 180
    name: str = LEASE_NAME
    check_mode: bool = False
    clock: Callable[[], float] = time.time
    renewed_at: float = 0.0

    @property
    def ref(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def _describe(self, spec: dict[str, Any]) -> str:
        since = spec.get("acquireTime") or spec.get("renewTime") or "an unknown time"
        renewed = parse_time(spec.get("renewTime"))
        duration = int(spec.get("leaseDurationSeconds") or 0)
        expires = micro_time(renewed + duration) if renewed is not None else "unknown"
        return (f"{self.ref} is held by {spec.get('holderIdentity')} since {since} "
                f"(last renewed {spec.get('renewTime')}, expires {expires} unless renewed)")

    def _expired(self, spec: dict[str, Any], now: float) -> bool:
        renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime"))
        return renewed is None or renewed + int(spec.get("leaseDurationSeconds") or 0) < now

    def acquire(self, *, break_lease: bool = False, how_to_break: str = "") -> list[str]:
        """Take the lease; return what was noteworthy (a takeover). Raises LeaseError."""
        notes: list[str] = []
        for _ in range(5):
            now = self.clock()
            current = self.client.get_or_none(lease_path(self.namespace, self.name))
            mine = {"holderIdentity": self.holder, "leaseDurationSeconds": int(self.duration),
                    "acquireTime": micro_time(now), "renewTime": micro_time(now)}
            if current is None:
                if self.check_mode:
                    return notes
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace,
                                     "labels": {"app.kubernetes.io/managed-by": "tai-deploy"}},
                        "spec": {**mine, "leaseTransitions": 0}}
                try:
                    self.client.create(lease_path(self.namespace), body)
                except ApiError as exc:
                    if exc.status == 409:  # created by somebody else in between
                        continue
                    raise
                self.renewed_at = now
                return notes
            spec = dict(current.get("spec") or {})
            holder = spec.get("holderIdentity")
            if holder == self.holder:
                self.renew()
                return notes
            if holder:
                if break_lease:
                    notes.append(f"broke the lease of {holder} (held since "
                                 f"{spec.get('acquireTime')})")
                elif self._expired(spec, now):
                    notes.append(f"took over the expired lease of {holder} (last renewed "
                                 f"{spec.get('renewTime')})")
                elif _holder_gone(holder):
                    notes.append(f"took over the lease of {holder}: that process is gone")
                else:
                    raise LeaseError(
                        f"another blue-green operation runs in this region: "
                        f"{self._describe(spec)}; wait for it to finish"
                        + (f", or {how_to_break}" if how_to_break else ""))
            if self.check_mode:
                return notes
            transitions = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
            try:
                self.client.patch(lease_path(self.namespace, self.name), {
                    "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                    "spec": {**mine, "leaseTransitions": transitions}})
            except ApiError as exc:
                if exc.conflict:
                    notes.clear()
                    continue
                raise
            self.renewed_at = now
            return notes
        raise LeaseError(f"{self.ref} kept changing while it was being taken; try again")

    def renew(self, *, at_most_every: float = 0.0) -> None:
        """Push renewTime forward (not more often than ``at_most_every`` seconds)."""
        now = self.clock()
        if self.check_mode or (at_most_every and now - self.renewed_at < at_most_every):
            return
        for _ in range(5):
            current = self.client.get_or_none(lease_path(self.namespace, self.name))
            spec = dict((current or {}).get("spec") or {})
            if current is None or spec.get("holderIdentity") != self.holder:
                now_held = (self._describe(spec) if spec.get("holderIdentity")
                            else f"{self.ref} is free")
                raise LeaseError(f"this run lost its lock on the region ({now_held}); "
                                 "somebody broke it, so this run stops here")
            try:
                self.client.patch(lease_path(self.namespace, self.name), {
                    "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                    "spec": {"renewTime": micro_time(now),
                             "leaseDurationSeconds": int(self.duration)}})
            except ApiError as exc:
                if exc.conflict:
                    continue
                raise
            self.renewed_at = now
            return
        raise LeaseError(f"{self.ref} kept changing while it was being renewed")

    def release(self) -> bool:
        """Clear the holder if it is still ours; True when it was released."""
        for _ in range(5):
            current = self.client.get_or_none(lease_path(self.namespace, self.name))
            spec = dict((current or {}).get("spec") or {})
            if current is None or spec.get("holderIdentity") != self.holder:
                return False
            if self.check_mode:
                return True
            try:
                self.client.patch(lease_path(self.namespace, self.name), {
                    "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                    "spec": {"holderIdentity": None, "acquireTime": None,
                             "renewTime": micro_time(self.clock())}})
            except ApiError as exc:
                if exc.conflict:
                    continue
                raise
            return True
        return False
