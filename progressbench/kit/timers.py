"""Timers of the service kit a registry entry lists, apart from the web code that applies them.

A transport's ``__init__`` names the timers its pattern cannot scale below
their floors (reported per cell as distortions); it must be able to do so
without importing the web framework the service context is built on.
"""

from __future__ import annotations

from progressbench.core.timers import Timer

#: ``AbortSignal.timeout(8_000)`` of the dispatch from the API route (seeds/000, Pattern A).
DISPATCH_ABORT_S = 8.0
#: Floor of that abort: on a loaded 2-core host a loopback connect alone can outlast the scaled
#: 8 s, and a dispatch lost to the host is not a finding about the pattern.
DISPATCH_ABORT_FLOOR_S = 1.0
DISPATCH_ABORT_TIMER = Timer(
    "API dispatch abort (AbortSignal 8 s)", DISPATCH_ABORT_S, floor_s=DISPATCH_ABORT_FLOOR_S
)

__all__ = ["DISPATCH_ABORT_FLOOR_S", "DISPATCH_ABORT_S", "DISPATCH_ABORT_TIMER"]
