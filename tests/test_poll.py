"""amp_image.poll: the one polling loop, on a fake clock."""

from __future__ import annotations

import pytest

from amp_image.poll import PollTimeout, poll_until


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_truthy_answer():
    clock, answers = Clock(), iter([0, None, "", "ready", "later"])
    assert poll_until(lambda: next(answers), timeout=10, interval=2, clock=clock,
                      sleep=clock.sleep) == "ready"
    assert clock.sleeps == [2, 2, 2]


def test_until_decides_and_a_falsy_value_can_be_the_answer():
    clock, answers = Clock(), iter([200, 503, None])
    assert poll_until(lambda: next(answers), timeout=10, until=lambda s: s is None,
                      clock=clock, sleep=clock.sleep) is None


def test_times_out_with_the_last_value():
    clock = Clock()
    with pytest.raises(PollTimeout) as timeout:
        poll_until(lambda: clock.now, timeout=5, interval=2, until=lambda v: v > 100,
                   clock=clock, sleep=clock.sleep)
    assert timeout.value.last == 6 and isinstance(timeout.value, TimeoutError)
    assert clock.sleeps == [2, 2, 2]


def test_checks_once_even_with_no_time():
    clock, calls = Clock(), []
    with pytest.raises(PollTimeout):
        poll_until(lambda: calls.append(1), timeout=0, clock=clock, sleep=clock.sleep)
    assert calls == [1] and clock.sleeps == []


def test_retry_on_exceptions_are_not_yet_others_end_it():
    clock, answers = Clock(), iter([OSError("refused"), ValueError("cut"), "up"])

    def check():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert poll_until(check, timeout=10, retry_on=(OSError, ValueError), clock=clock,
                      sleep=clock.sleep) == "up"
    with pytest.raises(PollTimeout) as timeout:
        poll_until(lambda: 1 / 0, timeout=1, retry_on=(ZeroDivisionError,), clock=clock,
                   sleep=clock.sleep)
    assert isinstance(timeout.value.last, ZeroDivisionError)
    with pytest.raises(KeyError):
        poll_until(lambda: {}["x"], timeout=10, retry_on=(OSError,), clock=clock,
                   sleep=clock.sleep)
