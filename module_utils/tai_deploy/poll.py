"""One way to wait or retry: call, test the answer, pause, until it holds or time is up.

The waits of the cores (a Vault node unsealing, a new KV mount upgrading, a leadership
election, a GKE or GCP operation, a Cloud DNS change, a Redis BGSAVE, a restored Redis cluster
forming, Deployments of a blue-green slot becoming available) and their retries (the
blue-green switch-back, a Kubernetes update redone on a conflict) share one loop so that each
states only what differs: what it calls, when the answer is good, which failures are tried
again, how long or how many times, how often, what goes on between two attempts, and what it
says when time is up. The clock and the sleep are parameters, so cores that take a fake clock
in tests (bluegreen, gke, cloud_dns) can pass theirs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class PollTimeout(TimeoutError):
    """The condition did not hold before the deadline or within the allowed attempts (raised
    when no on_timeout is given)."""

    def __init__(self, timeout: float, last: object, attempts: int | None = None) -> None:
        super().__init__(f"the condition did not hold within {timeout:g} s" if attempts is None
                         else f"the condition did not hold in {attempts} attempt(s)")
        self.timeout = timeout
        self.last = last
        self.attempts = attempts


class Deadline:
    """Wall-clock limit for waiting on long-running operations.

    An infinite one (a retry bounded by attempts alone) never reads the clock.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds = seconds
        self.end = math.inf if seconds == math.inf else clock() + seconds

    def expired(self) -> bool:
        return self.left() <= 0

    def left(self) -> float:
        """Seconds until the deadline (zero or less once it has expired)."""
        return math.inf if self.end == math.inf else self.end - self.clock()


def _holds(value: object) -> bool:
    return bool(value)


class _Nothing:
    """No first answer: poll calls fn first."""


_NOTHING = _Nothing()


def _always(_: BaseException) -> bool:
    return True


def poll[T](fn: Callable[[], T], until: Callable[[T], bool] = _holds, *,
         timeout: float | Deadline, interval: float, backoff: float = 1.0,
         max_interval: float | None = None, retry_on: tuple[type[BaseException], ...] = (),
         retry_if: Callable[[BaseException], bool] = _always, attempts: int | None = None,
         on_miss: Callable[[], None] | None = None, stop_at_deadline: bool = False,
         on_timeout: Callable[[T], T] | None = None, first: T | _Nothing = _NOTHING,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` until ``until(answer)`` holds and return that answer.

    ``fn`` runs at least once, unless ``first`` is given: an answer already in hand (the
    operation a create call returned) is tested before anything is called. After each answer
    that does not hold, the loop sleeps ``interval`` seconds (multiplied by ``backoff`` after
    each sleep, capped at ``max_interval``). Once ``timeout`` seconds have passed since the
    start (or the given Deadline, which several waits can share, has expired), or ``fn`` has
    been called ``attempts`` times (a ``first`` answer is not a call), the last answer goes to
    ``on_timeout``, whose value is returned (or which raises the caller's own one-sentence
    error); without it PollTimeout is raised. Time and attempts are checked after an answer,
    so a wait may end one interval after its deadline, unless ``stop_at_deadline`` is set: then
    no pause goes past the deadline (the last one ends at it, and the answer after it is the
    last). A retry bounded by attempts alone passes ``timeout=math.inf``.

    ``on_miss`` runs after every attempt that does not hold, before time and attempts are
    checked (so also before the last answer goes to ``on_timeout``): what must go on while
    waiting, such as renewing a lease; what it raises ends the wait.

    An exception of a ``retry_on`` type for which ``retry_if`` holds (every one, by default)
    counts as an attempt that does not hold; when time or attempts are up with such an
    exception as the last attempt, it propagates. Any other exception propagates at once.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout, clock)
    pause = interval
    pending = first
    calls = 0
    while True:
        try:
            if isinstance(pending, _Nothing):
                calls += 1
                answer = fn()
            else:
                answer = pending
        except retry_on as exc:
            if not retry_if(exc):
                raise
            if on_miss is not None:
                on_miss()
            left = deadline.left()
            if left <= 0 or (attempts is not None and calls >= attempts):
                raise
        else:
            if until(answer):
                return answer
            if on_miss is not None:
                on_miss()
            left = deadline.left()
            if left <= 0 or (attempts is not None and calls >= attempts):
                if on_timeout is None:
                    raise PollTimeout(deadline.seconds, answer,
                                      None if left <= 0 else attempts)
                return on_timeout(answer)
        pending = _NOTHING
        sleep(min(pause, left) if stop_at_deadline else pause)
        pause *= backoff
        if max_interval is not None:
            pause = min(pause, max_interval)
