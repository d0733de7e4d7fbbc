"""``limit_data``: passes at most ``bytes`` bytes per connection and direction, then closes.

The count lives in the per-connection state, so it survives updates of the
toxic. The last chunk is cut to fit; reaching the limit sends end-of-stream
(a FIN, which ends the whole connection).
"""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub


@dataclass(eq=False, slots=True)
class LimitDataState:
    transmitted: int = 0


@dataclass(frozen=True, slots=True)
class LimitDataToxic:
    bytes: int = 0

    def new_state(self) -> LimitDataState:
        return LimitDataState()

    async def pipe(self, stub: Stub) -> None:
        state = stub.state
        assert isinstance(state, LimitDataState)
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            remaining = max(self.bytes - state.transmitted, 0)
            data = chunk.data[:remaining]
            if data:
                stub.send(chunk.with_data(data))
                state.transmitted += len(data)
            if self.bytes - state.transmitted <= 0:
                stub.close()
                return
