"""``idle_timeout`` (mobile): a carrier-grade NAT forgetting an idle mapping.

A connection that carries no byte in EITHER direction for ``timeout`` ms is
silently blackholed for the rest of its life: from then on nothing it
receives is delivered (bytes are dropped), and neither peer gets a FIN or
an RST. New connections work normally. Any chunk in either direction
resets the idle clock, so heartbeats keep a connection alive. The clock
starts when the toxic meets the connection (at connect time, or when the
toxic is added to a live connection). ``timeout <= 0`` disables it.

The toxic sits in both links of a connection and the two stages share one
state, the time of the last chunk seen in either direction.
"""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import TIMEOUT, Stub


@dataclass(eq=False, slots=True)
class IdleState:
    last_activity: float | None = None


@dataclass(frozen=True, slots=True)
class IdleTimeoutToxic:
    timeout: int = 0

    def new_state(self) -> IdleState:
        return IdleState()

    async def pipe(self, stub: Stub) -> None:
        state = stub.state
        assert isinstance(state, IdleState)
        if state.last_activity is None:
            state.last_activity = stub.clock.now()
        limit = self.timeout / 1000
        while True:
            deadline = state.last_activity + limit if self.timeout > 0 else None
            item = await stub.recv_until(deadline)
            if item is TIMEOUT:
                # The other direction may have moved the clock since we started waiting.
                if stub.clock.now() >= state.last_activity + limit:
                    stub.control.silence()
                    return
                continue
            if item is None:
                stub.close()
                return
            state.last_activity = stub.clock.now()
            stub.send(item)
