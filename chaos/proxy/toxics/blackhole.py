"""``blackhole`` (mobile): a tunnel. Bytes stop in BOTH directions; nothing is lost.

While present, the toxic reads nothing: every chunk, and an end-of-stream,
waits in its input channel, in order. No FIN and no RST reach either peer.
When the queued bytes pass the link's backlog mark the proxy stops reading
the source socket, so the sender's socket buffers fill and its writes
block, as over a path that stopped acknowledging. Removing the toxic lets
the queue through in order on the *same* connection: TCP retransmission
surviving a subway tunnel.

Although added with a ``stream`` (and listed under it), one blackhole
applies to both directions of every connection of its proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub


@dataclass(frozen=True, slots=True)
class BlackholeToxic:
    async def pipe(self, stub: Stub) -> None:
        await stub.wait_interrupt()
