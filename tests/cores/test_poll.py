"""The one wait loop of the cores (module_utils/tai_deploy/poll.py), on a fake clock."""

from __future__ import annotations

import math

import pytest
from tai_deploy.poll import Deadline, PollTimeout, poll


class FakeTime:
    """A clock that moves only when the loop sleeps; it records every sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_answer_that_holds_after_sleeping_the_interval() -> None:
    t = FakeTime()
    answers = iter([1, 2, 3, 4])
    assert poll(lambda: next(answers), lambda n: n >= 3, timeout=10, interval=0.5,
                clock=t.clock, sleep=t.sleep) == 3
    assert t.sleeps == [0.5, 0.5]


def test_backoff_grows_the_pause_up_to_its_cap() -> None:
    t = FakeTime()
    calls: list[float] = []

    def never() -> bool:
        calls.append(t.now)
        return False

    with pytest.raises(PollTimeout, match=r"within 10 s") as err:
        poll(never, timeout=10, interval=1, backoff=2, max_interval=3, clock=t.clock,
             sleep=t.sleep)
    assert t.sleeps == [1, 2, 3, 3, 3]  # 1+2+3+3 = 9 < 10, then 12 >= 10: the last answer
    assert calls[-1] == 112.0 and err.value.last is False


def test_on_timeout_gets_the_last_answer_and_may_return_it_or_raise() -> None:
    t = FakeTime()
    answers = iter(range(100))
    assert poll(lambda: next(answers), lambda n: n < 0, timeout=1, interval=0.25,
                on_timeout=lambda last: -last, clock=t.clock, sleep=t.sleep) == -4

    def refuse(last: int) -> int:
        raise ValueError(f"still {last}")

    with pytest.raises(ValueError, match="still 0"):
        poll(lambda: 0, lambda n: n > 0, timeout=0, interval=1, on_timeout=refuse,
             clock=t.clock, sleep=t.sleep)


def test_a_first_answer_is_tested_before_anything_is_called() -> None:
    t = FakeTime()
    calls: list[int] = []

    def late() -> str:
        calls.append(1)
        return "late"

    assert poll(late, lambda s: s == "done", first="done", timeout=5, interval=1,
                clock=t.clock, sleep=t.sleep) == "done"
    assert calls == [] and t.sleeps == []
    assert poll(lambda: "done", lambda s: s == "done", first="running", timeout=5, interval=1,
                clock=t.clock, sleep=t.sleep) == "done"
    assert t.sleeps == [1]


def test_retry_on_exceptions_count_as_not_yet_and_the_last_one_propagates() -> None:
    t = FakeTime()
    answers: list[OSError | str] = [OSError("refused"), OSError("refused"), "up"]

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert poll(call, timeout=5, interval=1, retry_on=(OSError,), clock=t.clock,
                sleep=t.sleep) == "up"

    def down() -> str:
        raise OSError("still refused")

    with pytest.raises(OSError, match="still refused"):
        poll(down, timeout=2, interval=1, retry_on=(OSError,), clock=t.clock, sleep=t.sleep)
    def broken() -> str:
        raise KeyError("x")

    before = len(t.sleeps)
    with pytest.raises(KeyError):  # not in retry_on: at once, without a sleep
        poll(broken, timeout=5, interval=1, retry_on=(OSError,), clock=t.clock, sleep=t.sleep)
    assert len(t.sleeps) == before


def test_a_shared_deadline_bounds_several_waits() -> None:
    t = FakeTime()
    deadline = Deadline(3, t.clock)
    poll(lambda: t.now >= 102, timeout=deadline, interval=1, sleep=t.sleep)
    with pytest.raises(PollTimeout):
        poll(lambda: False, timeout=deadline, interval=1, sleep=t.sleep)
    assert t.now == 103.0  # the second wait had one second left, not three


def test_attempts_bound_a_retry_without_a_deadline() -> None:
    t = FakeTime()
    calls: list[float] = []

    def busy() -> str:
        calls.append(t.now)
        raise OSError("busy")

    def unread() -> float:
        raise AssertionError("a retry bounded by attempts alone read the clock")

    with pytest.raises(OSError, match="busy"):
        poll(busy, timeout=math.inf, interval=0.1, backoff=2, max_interval=0.3, attempts=4,
             retry_on=(OSError,), clock=unread, sleep=t.sleep)
    assert len(calls) == 4 and t.sleeps == [0.1, 0.2, 0.3]  # no pause after the last attempt
    with pytest.raises(PollTimeout, match=r"in 2 attempt\(s\)") as err:
        poll(lambda: "no", lambda s: s == "yes", timeout=math.inf, interval=1, attempts=2,
             clock=t.clock, sleep=t.sleep)
    assert err.value.attempts == 2 and err.value.last == "no"
    answers = iter(["no", "no", "yes"])
    assert poll(lambda: next(answers), lambda s: s == "yes", timeout=math.inf, interval=1,
                attempts=3, clock=t.clock, sleep=t.sleep) == "yes"
    # a first answer in hand is not a call
    assert poll(lambda: "yes", lambda s: s == "yes", first="no", timeout=math.inf,
                interval=1, attempts=1, clock=t.clock, sleep=t.sleep) == "yes"


def test_retry_if_sorts_the_exceptions_of_one_type() -> None:
    t = FakeTime()
    errors = [OSError(11, "try again"), OSError(2, "no such file")]
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        raise errors.pop(0)

    with pytest.raises(OSError, match="no such file"):  # not retried: at once
        poll(call, timeout=10, interval=1, retry_on=(OSError,),
             retry_if=lambda exc: isinstance(exc, OSError) and exc.errno == 11,
             clock=t.clock, sleep=t.sleep)
    assert len(calls) == 2 and t.sleeps == [1]


def test_on_miss_runs_after_every_miss_before_the_deadline_is_checked() -> None:
    t = FakeTime()
    events: list[str] = []

    def ask() -> bool:
        events.append(f"ask {t.now:g}")
        return False

    def sleep(seconds: float) -> None:
        events.append(f"sleep {seconds:g}")
        t.sleep(seconds)

    with pytest.raises(PollTimeout):
        poll(ask, timeout=2, interval=1, on_miss=lambda: events.append("renew"),
             clock=t.clock, sleep=sleep)
    assert events == ["ask 100", "renew", "sleep 1", "ask 101", "renew", "sleep 1",
                      "ask 102", "renew"]  # also after the last answer, before giving up
    events.clear()
    replies: list[OSError | str] = [OSError("refused"), "up"]
    answers = iter(replies)

    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert poll(call, timeout=5, interval=1, retry_on=(OSError,),
                on_miss=lambda: events.append("renew"), clock=t.clock, sleep=sleep) == "up"
    assert events == ["renew", "sleep 1"]  # a retried exception is a miss; a hit is not

    def lost() -> None:
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        poll(lambda: False, timeout=5, interval=1, on_miss=lost, clock=t.clock, sleep=sleep)


def test_stop_at_deadline_ends_the_last_pause_at_the_deadline() -> None:
    t = FakeTime()
    with pytest.raises(PollTimeout):
        poll(lambda: False, timeout=2.5, interval=1, stop_at_deadline=True, clock=t.clock,
             sleep=t.sleep)
    assert t.sleeps == [1, 1, 0.5] and t.now == 102.5
    t = FakeTime()
    with pytest.raises(PollTimeout):  # without it, the wait may end an interval late
        poll(lambda: False, timeout=2.5, interval=1, clock=t.clock, sleep=t.sleep)
    assert t.sleeps == [1, 1, 1] and t.now == 103.0
