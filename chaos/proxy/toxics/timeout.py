"""``timeout``: drops every chunk; closes (FIN) after ``timeout`` ms with no data arriving.

The timer restarts whenever a chunk arrives, so it acts as an idle timeout
for its direction although nothing passes. ``timeout = 0`` blackholes the
direction forever. Removing the toxic closes the connection (Toxiproxy's
``Cleanup``: dropped bytes would corrupt the stream if it resumed).
"""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import TIMEOUT, Stub


@dataclass(frozen=True, slots=True)
class TimeoutToxic:
    timeout: int = 0

    async def pipe(self, stub: Stub) -> None:
        while True:
            deadline = stub.clock.now() + self.timeout / 1000 if self.timeout > 0 else None
            item = await stub.recv_until(deadline)
            if item is TIMEOUT or item is None:
                stub.close()
                return
            # A chunk: dropped on the floor.

    def cleanup(self, stub: Stub) -> None:
        stub.close()
