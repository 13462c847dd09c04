"""The one polling loop: call a check until it answers, or until a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class PollTimeout(TimeoutError):
    """The check never answered in time; ``last`` is its last value (or exception)."""

    def __init__(self, timeout: float, last: object):
        super().__init__(f"not within {timeout:g} s (last: {last!r})")
        self.timeout = timeout
        self.last = last


def poll_until(check: Callable[[], T], *, timeout: float, interval: float = 1.0,
               until: Callable[[T], bool] = bool,
               retry_on: tuple[type[BaseException], ...] = (),
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """check() every ``interval`` seconds until ``until(value)`` (by default: until it is
    truthy); return that value.

    check() runs at least once.  An exception of a ``retry_on`` type counts as "not
    yet"; any other one ends the polling.  After ``timeout`` seconds, raise PollTimeout
    with the last value or exception.
    """
    deadline = clock() + timeout
    while True:
        try:
            last: object = check()
        except retry_on as exc:
            last = exc
        else:
            if until(last):  # type: ignore[arg-type]
                return last  # type: ignore[return-value]
        if clock() >= deadline:
            raise PollTimeout(timeout, last)
        sleep(interval)
