"""Shared test helpers: one scaled time unit, and waiting on conditions with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Every integration timeout is a multiple of this (seconds); raise it on a slow machine.
UNIT = 1.0


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout * UNIT
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * UNIT:.1f}s waiting for {what}")
        time.sleep(interval)
        last = condition()
    return last
