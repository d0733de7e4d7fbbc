"""partysocket's reconnect schedule, as a :class:`~progressbench.core.reconnect.Backoff`.

partysocket (``packages/partysocket/src/ws.ts``, a fork of
reconnecting-websocket; platform-facts §5): the first attempt waits nothing;
retry ``n`` waits ``min × grow^(n-1)`` capped at ``max``, where ``min`` is
1000 + rand × 4000 ms, ``grow`` 1.3, ``max`` 10,000 ms; the retry counter is
reset only after a socket stayed open ``minUptime`` (5 s) — the relay watcher
gives its :class:`~progressbench.core.reconnect.Reconnector` that as
``stable_after_s``. The seq bookkeeping (show each seq once, snapshot after
the contiguous prefix) is the core's :class:`~progressbench.core.reconnect.SeqBook`.
"""

from __future__ import annotations

from progressbench.core.reconnect import Backoff, SeqBook

MIN_DELAY_LOW_S = 1.0
MIN_DELAY_HIGH_S = 5.0
GROW = 1.3
MAX_DELAY_S = 10.0
CONNECT_TIMEOUT_S = 4.0
MIN_UPTIME_S = 5.0

#: The name the relay's docs use for the seq book.
SeqTracker = SeqBook


def partysocket(min_delay_s: float, grow: float = GROW, max_delay_s: float = MAX_DELAY_S) -> Backoff:
    """partysocket's ``_getNextDelay`` for one phone's drawn ``min``: geometric, capped, no jitter."""
    return Backoff(initial=min_delay_s, ceiling=max_delay_s, factor=grow)


def reconnect_delay(
    retry_count: int, min_delay_s: float, grow: float = GROW, max_delay_s: float = MAX_DELAY_S
) -> float:
    """The wait before retry ``retry_count``: 0 for the first attempt, then geometric, capped."""
    return partysocket(min_delay_s, grow, max_delay_s).delay(retry_count)
