"""``reset_peer``: at the first chunk (or EOF), drop it, wait ``timeout`` ms, then close.

The close is an RST only on connections opened while a ``reset_peer`` toxic
was already on the proxy: those get ``SO_LINGER=0`` on both sockets at
set-up (see :class:`~progressbench.chaos.proxy.toxics.base.ToxicKind`). Added to an older
connection it closes with a FIN, as in Toxiproxy. The wait ignores
interrupts, so API calls that touch this stage wait for it (Toxiproxy too).
"""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub


@dataclass(frozen=True, slots=True)
class ResetPeerToxic:
    timeout: int = 0

    async def pipe(self, stub: Stub) -> None:
        await stub.recv()
        await stub.sleep_uninterruptibly(self.timeout / 1000)
        stub.close()
