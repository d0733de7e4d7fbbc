"""``pause_reader`` (mobile): the phone's screen sleeps and the app stops reading.

While present, the proxy stops reading this link's source socket (for the
default ``downstream`` stream: the server side), so the server's writes
back up into its socket buffers, and anything already read waits here in
order. Removing the toxic resumes delivery with nothing lost.

``close_after`` (ms, 0 = never): once the connection has been paused that
long, the proxy closes the link's destination (for ``downstream``: the
client side, with a FIN) and so the connection: the OS reclaiming a
suspended app's socket. The countdown survives restarts of the stage
(another toxic added or this one updated).
"""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub


@dataclass(eq=False, slots=True)
class PauseState:
    paused_since: float | None = None


@dataclass(frozen=True, slots=True)
class PauseReaderToxic:
    close_after: int = 0

    def new_state(self) -> PauseState:
        return PauseState()

    async def pipe(self, stub: Stub) -> None:
        state = stub.state
        assert isinstance(state, PauseState)
        if state.paused_since is None:
            state.paused_since = stub.clock.now()
        stub.control.hold_source(state)
        try:
            if self.close_after > 0:
                await stub.sleep_until(state.paused_since + self.close_after / 1000)
                stub.close()
                return
            await stub.wait_interrupt()
        finally:
            stub.control.release_source(state)
