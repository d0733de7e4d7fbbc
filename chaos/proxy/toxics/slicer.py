"""``slicer``: splits chunks into pieces of about ``average_size`` bytes, ``delay`` µs apart.

Toxiproxy's recursive halving: a piece longer than ``average_size +
size_variation`` is split near its middle (± a random ``size_variation``)
and both halves are split again. Two guards Toxiproxy lacks: pieces are
never empty (it recurses forever on ``average_size = 0``) and the split
point stays inside the piece (a variation larger than the piece).
On interruption the rest of the chunk goes out unsliced.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub
from progressbench.chaos.proxy.types import Interrupted


@dataclass(frozen=True, slots=True)
class SlicerToxic:
    average_size: int = 0
    size_variation: int = 0
    delay: int = 0

    def pieces(self, size: int, rng: random.Random) -> list[tuple[int, int]]:
        """``(start, end)`` offsets covering ``[0, size)`` in order."""
        out: list[tuple[int, int]] = []
        stack = [(0, size)]
        while stack:
            start, end = stack.pop()
            if end - start <= 1 or (end - start) - self.average_size <= self.size_variation:
                out.append((start, end))
                continue
            mid = start + (end - start) // 2
            if self.size_variation > 0:
                mid += rng.randrange(self.size_variation * 2) - self.size_variation
            mid = min(max(mid, start + 1), end - 1)
            stack.append((mid, end))
            stack.append((start, mid))
        return out

    async def pipe(self, stub: Stub) -> None:
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            data = chunk.data
            for start, end in self.pieces(len(data), stub.rng):
                stub.send(chunk.with_data(data[start:end]))
                try:
                    await stub.sleep(self.delay / 1_000_000)
                except Interrupted:
                    stub.send(chunk.with_data(data[end:]))
                    raise
