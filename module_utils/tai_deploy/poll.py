"""One way to wait: call, test the answer, pause, until it holds or a deadline passes.

The waits of the cores (a Vault node unsealing, a new KV mount upgrading, a leadership
election, a Redis BGSAVE, a Redis node loading its data) share one loop so that each states
only what differs: what it calls, when the answer is good, how long, how often, and what it
says when time is up. The clock and the sleep are parameters, so cores that take a fake clock
in tests (bluegreen, gke, cloud_dns) can pass theirs.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class PollTimeout(TimeoutError):
    """The condition did not hold before the deadline (raised when no on_timeout is given)."""

    def __init__(self, timeout: float, last: object) -> None:
        super().__init__(f"the condition did not hold within {timeout:g} s")
        self.timeout = timeout
        self.last = last


class Deadline:
    """Wall-clock limit for waiting on long-running operations."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds = seconds
        self.end = clock() + seconds

    def expired(self) -> bool:
        return self.clock() >= self.end


def _holds(value: object) -> bool:
    return bool(value)


class _Nothing:
    """No first answer: poll calls fn first."""


_NOTHING = _Nothing()


def poll[T](fn: Callable[[], T], until: Callable[[T], bool] = _holds, *,
         timeout: float | Deadline, interval: float, backoff: float = 1.0,
         max_interval: float | None = None, retry_on: tuple[type[BaseException], ...] = (),
         on_timeout: Callable[[T], T] | None = None, first: T | _Nothing = _NOTHING,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` until ``until(answer)`` holds and return that answer.

    ``fn`` runs at least once, unless ``first`` is given: an answer already in hand (the
    operation a create call returned) is tested before anything is called. After each answer
    that does not hold, the loop sleeps ``interval`` seconds (multiplied by ``backoff`` after
    each sleep, capped at ``max_interval``). Once ``timeout`` seconds have passed since the
    start (or the given Deadline, which several waits can share, has expired), the last answer
    goes to ``on_timeout``, whose value is returned (or which raises the caller's own
    one-sentence error); without it PollTimeout is raised. The deadline is checked after an
    answer, so a wait may end one interval after it.

    An exception of a ``retry_on`` type counts as an answer that does not hold; when the time
    is up with such an exception as the last attempt, it propagates. Any other exception
    propagates at once.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout, clock)
    pause = interval
    pending = first
    while True:
        try:
            answer = fn() if isinstance(pending, _Nothing) else pending
        except retry_on:
            if deadline.expired():
                raise
        else:
            if until(answer):
                return answer
            if deadline.expired():
                if on_timeout is None:
                    raise PollTimeout(deadline.seconds, answer)
                return on_timeout(answer)
        pending = _NOTHING
        sleep(pause)
        pause *= backoff
        if max_interval is not None:
            pause = min(pause, max_interval)
