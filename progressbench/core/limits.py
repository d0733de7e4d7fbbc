"""Per-identity token buckets for job creation (pure: the caller passes the clock).

Each identity (see :func:`progressbench.kit.limits.identity`) owns a bucket of
``burst`` tokens refilled at ``rate`` per second; creating a job takes one.
An empty bucket answers with the seconds until the next token, which the
service sends as ``Retry-After`` with a 429. The table of buckets is bounded:
when it is full, buckets that have refilled completely (they hold no state
worth keeping) are dropped first, then the oldest.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

MAX_IDENTITIES = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``take(key, now)`` → 0.0 if allowed, else the seconds to wait (> 0)."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_IDENTITIES) -> None:
        if not (math.isfinite(rate) and rate > 0) or burst < 1:
            raise ValueError("rate must be finite and positive, burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(now - bucket.at, 0.0)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self.max_keys:
            return
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
