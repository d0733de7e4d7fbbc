"""``latency``: each chunk leaves at its read time + latency ± jitter (ms).

The delay counts from the chunk's timestamp, not from when this toxic got
to it, so back-to-back chunks are pipelined rather than serialized (10
chunks sent 50 ms apart with 500 ms latency arrive 50 ms apart). Order is
preserved: a chunk never overtakes the one before it. On interruption the
held chunk is released at once, like Toxiproxy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub
from progressbench.chaos.proxy.types import Interrupted


@dataclass(frozen=True, slots=True)
class LatencyToxic:
    latency: int = 0
    jitter: int = 0

    def delay(self, rng: random.Random) -> float:
        """Seconds to add: latency plus a uniform integer in [-jitter, +jitter) ms."""
        ms = self.latency
        if self.jitter > 0:
            ms += rng.randrange(-self.jitter, self.jitter)
        return ms / 1000

    async def pipe(self, stub: Stub) -> None:
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            release = chunk.time + self.delay(stub.rng)
            try:
                await stub.sleep_until(release)
            except Interrupted:
                stub.send(chunk)
                raise
            # Re-stamp so that a later latency toxic adds its delay on top.
            stub.send(chunk.at(max(release, chunk.time)))
