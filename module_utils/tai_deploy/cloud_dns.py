"""One region's item of a geo-routed Cloud DNS record set, without clobbering the others.

Cloud DNS holds ONE record set per name and type; geolocation routing is its
``routingPolicy.geo.items`` list, one item per GCP region (``location``) with that region's
``rrdatas``. Every region's run owns exactly one item: it reads the record set, replaces (or
removes) only the item of its location, and writes through ``changes.create`` with the exact
record set it read as the deletion and the new one as the addition. Cloud DNS applies a change
only if each deletion matches the live record set, so a concurrent change by another region
makes the change fail (HTTP 412 conditionNotMet, or 409 when two runs both create the record
set); the run then reads again and retries, up to ``attempts`` times. Nothing is ever written
from a stale read.

Removing the last item is refused: a geo policy without items would leave the name with no
answer at all.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .gcp_rest import GcpApiError, RestClient, path_segment
from .poll import Deadline, poll

CONFLICT_STATUSES = frozenset({409, 412})
STATES = ("present", "absent")


class DnsError(RuntimeError):
    """A record set that cannot be converged; the message is one sentence."""


def strip_kind(value: Any) -> Any:
    """The API's ``kind`` markers removed (they are output-only decoration)."""
    if isinstance(value, dict):
        return {k: strip_kind(v) for k, v in value.items() if k != "kind"}
    if isinstance(value, list):
        return [strip_kind(v) for v in value]
    return value


def _canon_item(item: Mapping[str, Any]) -> str:
    data = strip_kind(dict(item))
    data["rrdatas"] = sorted(data.get("rrdatas") or [])
    return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class GeoRecord:
    """Where the record set lives and which item this run owns."""

    project: str
    zone: str
    name: str
    rtype: str
    ttl: int
    location: str
    rrdatas: tuple[str, ...] = ()
    health_checked_targets: Mapping[str, Any] | None = None

    @property
    def zone_path(self) -> str:
        return (f"/dns/v1/projects/{path_segment(self.project)}/managedZones/"
                f"{path_segment(self.zone)}")

    @property
    def rrset_path(self) -> str:
        return f"{self.zone_path}/rrsets/{path_segment(self.name)}/{path_segment(self.rtype)}"

    def describe(self) -> str:
        return f"record set {self.name} {self.rtype} in zone {self.zone} (project {self.project})"

    def item(self) -> dict[str, Any]:
        out: dict[str, Any] = {"location": self.location, "rrdatas": list(self.rrdatas)}
        if self.health_checked_targets:
            out["healthCheckedTargets"] = copy.deepcopy(dict(self.health_checked_targets))
        return out


def check_input(rec: GeoRecord, state: str) -> None:
    if state not in STATES:
        raise DnsError(f"state must be present or absent, got {state!r}.")
    if not rec.name.endswith("."):
        raise DnsError(f"Record name {rec.name!r} must be fully qualified with a trailing dot, "
                       f"such as {rec.name}.")
    if state == "present" and not rec.rrdatas and not rec.health_checked_targets:
        raise DnsError(f"The geo item {rec.location} of {rec.describe()} needs rrdatas (the "
                       "region's load balancer address).")
    if not 0 < rec.ttl <= 604800:
        raise DnsError(f"ttl must be between 1 and 604800 seconds, got {rec.ttl}.")


def items_of(rrset: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not rrset:
        return []
    geo = (rrset.get("routingPolicy") or {}).get("geo") or {}
    return [dict(i) for i in geo.get("items") or []]


def desired_record_set(rec: GeoRecord, live: Mapping[str, Any] | None,
                       state: str) -> dict[str, Any] | None:
    """The record set after this run; None when the record set should not exist or stays."""
    if live is not None:
        policy = live.get("routingPolicy") or {}
        if "geo" not in policy:
            kind = "static rrdatas" if live.get("rrdatas") else (
                "a " + "/".join(sorted(k for k in policy if k != "kind")) + " routing policy")
            raise DnsError(f"The {rec.describe()} exists with {kind} instead of a geo routing "
                           "policy; convert or delete it by hand before a region manages its "
                           "geo item.")
    items = items_of(live)
    mine = [i for i in items if i.get("location") == rec.location]
    others = [i for i in items if i.get("location") != rec.location]
    if state == "absent":
        if not mine:
            return None
        if not others:
            raise DnsError(f"Refusing to remove {rec.location}, the last item of the geo policy "
                           f"of {rec.describe()}: the name would stop resolving; restore another "
                           "region first.")
        new_items = [strip_kind(i) for i in others]
        ttl = int(live.get("ttl", rec.ttl)) if live else rec.ttl
    else:
        new_items = []
        placed = False
        for item in items:
            if item.get("location") == rec.location:
                if not placed:
                    new_items.append(rec.item())
                    placed = True
                continue  # a duplicate of our location (invalid in the API) is dropped
            new_items.append(strip_kind(item))
        if not placed:
            new_items.append(rec.item())
        ttl = rec.ttl
    policy = strip_kind(dict((live or {}).get("routingPolicy") or {}))
    geo = dict(policy.get("geo") or {})
    geo["items"] = new_items
    policy["geo"] = geo
    return {"name": rec.name, "type": rec.rtype, "ttl": ttl, "routingPolicy": policy}


def same_record_set(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    if int(a.get("ttl", 0)) != int(b.get("ttl", 0)):
        return False
    pa = strip_kind(dict(a.get("routingPolicy") or {}))
    pb = strip_kind(dict(b.get("routingPolicy") or {}))
    ia = sorted(_canon_item(i) for i in (pa.get("geo") or {}).pop("items", []) or [])
    ib = sorted(_canon_item(i) for i in (pb.get("geo") or {}).pop("items", []) or [])
    return ia == ib and json.dumps(pa, sort_keys=True) == json.dumps(pb, sort_keys=True)


@dataclass
class Result:
    changed: bool
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    change: dict[str, Any] | None = None
    change_id: str | None = None
    attempts: int = 0
    warnings: list[str] = field(default_factory=list)

    def locations(self, which: str) -> list[str]:
        rrset = self.before if which == "before" else self.after
        return [str(i.get("location")) for i in items_of(rrset)]


class GeoItemConverger:
    """Read, merge, write with optimistic concurrency; ``sleep``/``clock`` injectable."""

    def __init__(self, client: RestClient, rec: GeoRecord, *, attempts: int = 5,
                 wait_timeout: float = 300.0, poll_interval: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.rec = rec
        self.attempts = max(1, attempts)
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.clock = clock

    def read(self) -> dict[str, Any] | None:
        try:
            return self.client.call("GET", self.rec.rrset_path,
                                    action=f"read the {self.rec.describe()}")
        except GcpApiError as exc:
            if exc.status == 404 and "managedZone" not in exc.message:
                return None
            raise

    def converge(self, state: str, *, check_mode: bool) -> Result:
        check_input(self.rec, state)
        last: GcpApiError | None = None
        # Not poll(): a read-modify-write redone on a conflict, with pauses growing linearly
        # (0.5 s per attempt, at most 2 s), and its own result at each way out.
        for attempt in range(1, self.attempts + 1):
            live = self.read()
            after = desired_record_set(self.rec, live, state)
            public_live = strip_kind(live) if live is not None else None
            if after is None or same_record_set(live, after):
                return Result(False, public_live, public_live, attempts=attempt)
            change: dict[str, Any] = {"additions": [after]}
            if live is not None:
                change["deletions"] = [live]
            result = Result(True, public_live, after, change=strip_kind(change), attempts=attempt)
            if check_mode:
                return result
            verb = "remove" if state == "absent" else "write"
            try:
                done = self.client.call(
                    "POST", f"{self.rec.zone_path}/changes", change,
                    action=f"{verb} the {self.rec.location} item of the {self.rec.describe()}")
            except GcpApiError as exc:
                if exc.status in CONFLICT_STATUSES:
                    last = exc  # someone changed the record set since we read it: read again
                    self.sleep(min(0.5 * attempt, 2.0))
                    continue
                raise
            result.change_id = str(done.get("id", ""))
            self._wait(done)
            return result
        raise DnsError(
            f"The {self.rec.describe()} kept changing while the {self.rec.location} item was "
            f"written ({self.attempts} attempts, last answer HTTP "
            f"{last.status if last else '?'}: {last.message if last else ''}); rerun the play.")

    def _wait(self, change: Mapping[str, Any]) -> None:
        cid = str(change.get("id", ""))

        def still_pending(current: Mapping[str, Any]) -> Mapping[str, Any]:
            raise DnsError(f"Cloud DNS change {cid} of the {self.rec.describe()} was still "
                           f"{current.get('status')} after {self.wait_timeout:g} s; it was "
                           "accepted and goes on: check it with `gcloud dns record-sets "
                           "changes describe`.")

        poll(lambda: self.client.call("GET", f"{self.rec.zone_path}/changes/{path_segment(cid)}",
                                      action=f"read Cloud DNS change {cid}"),
             lambda current: current.get("status", "done") == "done", first=change,
             timeout=Deadline(self.wait_timeout, self.clock), interval=self.poll_interval,
             on_timeout=still_pending, sleep=self.sleep)


def record_from_params(*, project: str, zone: str, name: str, rtype: str, ttl: int, location: str,
                       rrdatas: Sequence[str] | None,
                       health_checked_targets: Mapping[str, Any] | None) -> GeoRecord:
    return GeoRecord(project=project, zone=zone, name=name, rtype=rtype.upper(), ttl=int(ttl),
                     location=location, rrdatas=tuple(str(r) for r in rrdatas or ()),
                     health_checked_targets=health_checked_targets or None)
