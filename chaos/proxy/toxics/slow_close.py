"""``slow_close``: data passes unchanged; end-of-stream is held ``delay`` ms."""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub
from progressbench.chaos.proxy.types import Interrupted


@dataclass(frozen=True, slots=True)
class SlowCloseToxic:
    delay: int = 0

    async def pipe(self, stub: Stub) -> None:
        while True:
            chunk = await stub.recv()
            if chunk is None:
                try:
                    await stub.sleep(self.delay / 1000)
                except Interrupted:
                    # Toxiproxy loses the EOF here (the connection never closes);
                    # give it back so the restarted or removed stage delivers it.
                    stub.input.push_front(None)
                    raise
                stub.close()
                return
            stub.send(chunk)
