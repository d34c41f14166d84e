"""The one wait loop of the cores (module_utils/tai_deploy/poll.py), on a fake clock."""

from __future__ import annotations

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
