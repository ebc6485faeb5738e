"""Tests wait for conditions, never for fixed times: one helper for every test module."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 600.0, every: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout` seconds,
    a bound generous enough for a loaded 2-core machine: a wait ends as soon as its condition holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
