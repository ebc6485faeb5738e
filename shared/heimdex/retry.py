"""Bounded retries with full-jitter exponential backoff, for bookkeeping that may lose a race.

A job store records a completion in one transaction. Under contention (Firestore aborts contended
transactions; a PostgreSQL connection may drop mid-commit) that transaction can fail although the
stage's work succeeded; handing the task back to the queue would run the whole stage again. The
stores retry the transaction itself here first.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_s(attempt: int, *, base: float, cap: float) -> float:
    """Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): uniform in
    [0, min(cap, base * 2**attempt)], so racing writers spread out instead of colliding again."""
    return random.uniform(0.0, min(cap, base * 2**attempt))


def retry_call(
    fn: Callable[[int], T],
    *,
    retryable: Callable[[Exception], bool],
    attempts: int = 6,
    base: float = 0.05,
    cap: float = 2.0,
    what: str = "call",
) -> T:
    """Call `fn(attempt)` (attempt 0, 1, ...) until it returns, `attempts` times at most, as long as
    what it raises is `retryable`; any other error, or the last one, propagates."""
    for attempt in range(attempts):
        try:
            return fn(attempt)
        except Exception as exc:
            if attempt == attempts - 1 or not retryable(exc):
                raise
            delay = backoff_s(attempt, base=base, cap=cap)
            log.info(
                "retrying",
                extra={"what": what, "attempt": attempt + 1, "error": f"{type(exc).__name__}: {exc}"},
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # attempts >= 1
