"""The relay client's pure parts: partysocket's reconnect schedule and seq deduplication.

partysocket (``packages/partysocket/src/ws.ts``, a fork of
reconnecting-websocket; platform-facts §5): the first attempt waits nothing;
retry ``n`` waits ``min × grow^(n-1)`` capped at ``max``, where ``min`` is
1000 + rand × 4000 ms, ``grow`` 1.3, ``max`` 10,000 ms; the retry counter is
reset only after a socket stayed open ``minUptime`` (5 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIN_DELAY_LOW_S = 1.0
MIN_DELAY_HIGH_S = 5.0
GROW = 1.3
MAX_DELAY_S = 10.0
CONNECT_TIMEOUT_S = 4.0
MIN_UPTIME_S = 5.0


def reconnect_delay(
    retry_count: int, min_delay_s: float, grow: float = GROW, max_delay_s: float = MAX_DELAY_S
) -> float:
    """partysocket's ``_getNextDelay``: 0 for the first attempt, then geometric, capped."""
    if retry_count <= 0:
        return 0.0
    return float(min(min_delay_s * grow ** (retry_count - 1), max_delay_s))


@dataclass
class SeqTracker:
    """Which seqs the user has been shown; the snapshot cursor is the contiguous prefix.

    Room messages and snapshot rows overlap by design (the room is joined
    before the snapshot is read); :meth:`add` says whether a seq is new, so
    the user sees each event exactly once. ``contiguous`` is the highest seq
    with every seq up to it seen: asking for ``after=contiguous`` fills any
    hole a dropped publish left, where ``after=max`` would skip it.
    """

    seen: set[int] = field(default_factory=set)
    contiguous: int = 0

    def add(self, seq: int) -> bool:
        if seq <= self.contiguous or seq in self.seen:
            return False
        self.seen.add(seq)
        while self.contiguous + 1 in self.seen:
            self.contiguous += 1
            self.seen.discard(self.contiguous)
        return True

    @property
    def highest(self) -> int:
        return max(self.seen, default=self.contiguous)

    def has_gap_before(self, seq: int) -> bool:
        """True when some seq below ``seq`` has not been seen."""
        return seq > self.contiguous + 1
