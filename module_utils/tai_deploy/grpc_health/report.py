# Copyright: tai-deploy contributors
"""The results of a health check: one TargetResult per target, kept up to date across attempts
(_TargetRun), and the HealthReport the module and the command line print."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .params import MASK, UNSTABLE, Target, WaitPolicy
from .probe import Observation, _Material


@dataclass
class TargetResult:
    """Outcome for one target (the last observation plus the wait bookkeeping)."""

    name: str
    address: str
    service: str
    healthy: bool = False
    status: str | None = None
    error: str | None = None
    message: str = ""
    latency_ms: float | None = None
    connect_ms: float | None = None
    attempts: int = 0
    consecutive_successes: int = 0
    metadata_keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    """Results of one call, in the order of the targets."""

    results: list[TargetResult]
    elapsed_ms: float

    @property
    def healthy(self) -> bool:
        return all(r.healthy for r in self.results)

    @property
    def unhealthy(self) -> list[TargetResult]:
        return [r for r in self.results if not r.healthy]

    def summary(self) -> dict[str, Any]:
        by_error: dict[str, int] = {}
        for r in self.results:
            if r.error:
                by_error[r.error] = by_error.get(r.error, 0) + 1
        healthy = sum(r.healthy for r in self.results)
        return {"total": len(self.results), "healthy": healthy,
                "unhealthy": len(self.results) - healthy, "by_error": by_error}

    def message(self) -> str:
        """One line: all healthy, or every unhealthy target and why."""
        total = len(self.results)
        bad = self.unhealthy
        if not bad:
            return f"all {total} gRPC target(s) SERVING"
        reasons = "; ".join(f"{_where(r)}: {r.error} - {r.message}" for r in bad)
        return f"{len(bad)} of {total} gRPC target(s) unhealthy: {reasons}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "targets": [r.as_dict() for r in self.results],
            "summary": self.summary(),
            "elapsed_ms": round(self.elapsed_ms, 1),
            "msg": self.message(),
        }


def _where(r: TargetResult) -> str:
    """The target's name, with its address and service unless the name already says them."""
    extra = [] if r.address in r.name else [r.address]
    if r.service and r.service not in r.name:
        extra.append(f"service {r.service!r}")
    return f"{r.name} ({', '.join(extra)})" if extra else r.name




class _TargetRun:
    """Bookkeeping of one target across attempts."""

    def __init__(self, target: Target, material: _Material) -> None:
        self.target = target
        self.material = material
        self.result = TargetResult(
            name=target.label, address=target.address, service=target.service,
            metadata_keys=[k for k, _ in target.metadata],
        )
        self.streak = 0
        self.streak_started = 0.0
        self.failures = 0
        self.flaps = 0

    def _take(self, obs: Observation) -> None:
        r = self.result
        r.attempts += 1
        r.status, r.latency_ms, r.connect_ms = obs.status, obs.latency_ms, obs.connect_ms
        if r.latency_ms is not None:
            r.latency_ms = round(r.latency_ms, 2)
        if r.connect_ms is not None:
            r.connect_ms = round(r.connect_ms, 2)

    def succeed(self, note: str = "") -> None:
        self.result.healthy, self.result.error = True, None
        self.result.message = "SERVING" + note

    def record_failure(self, obs: Observation) -> None:
        self._take(obs)
        if self.streak:
            self.flaps += 1
        self.streak = 0
        self.result.consecutive_successes = 0
        self.failures += 1
        self.result.healthy, self.result.error = False, obs.error
        flapping = f" (lost SERVING {self.flaps} time(s) while waiting)" if self.flaps else ""
        self.result.message = obs.message + flapping

    def record_success(self, obs: Observation) -> None:
        self._take(obs)
        if self.streak == 0:
            self.streak_started = obs.started
        self.streak += 1
        self.failures = 0
        self.result.consecutive_successes = self.streak

    def unstable(self, policy: WaitPolicy, how: str) -> None:
        self.result.healthy, self.result.error = False, UNSTABLE
        flapping = f"; lost SERVING {self.flaps} time(s) while waiting" if self.flaps else ""
        self.result.message = (
            f"SERVING but not stable before wait_timeout {policy.timeout:g}s: {how}{flapping}"
        )

    def next_check(self, obs: Observation, now: float, policy: WaitPolicy,
                   deadline: float) -> float | None:
        """Record a Check observation; the time of the next attempt or None when done."""
        if obs.error is None:
            self.record_success(obs)
            if self.streak >= policy.consecutive_successes:
                self.succeed(f" ({self.streak} consecutive checks)" if self.streak > 1 else "")
                return None
            due = self.streak_started + self.streak * policy.interval
            if due > deadline:
                self.unstable(policy, f"{self.streak} of {policy.consecutive_successes} "
                                      "required consecutive SERVING checks")
                return None
            return max(due, now)
        self.record_failure(obs)
        if now >= deadline:
            return None
        return min(now + policy.retry_delay(self.failures), deadline)



def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by MASK."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
