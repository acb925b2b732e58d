"""The one way the tests wait for something: poll a predicate until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float, interval: float = 0.2, message: str | Callable[[], str] = ""
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value, and return that value.

    After ``timeout`` seconds raise AssertionError with ``message`` (a string, or a function called then, so it
    can show the latest state). The predicate may itself fail the wait early by raising (e.g. an assertion that
    the process under test is still alive)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(text or f"condition not met within {timeout:g} s")
        time.sleep(interval)
