"""One proxied TCP connection: client endpoint, server endpoint, two links.

Life cycle (Toxiproxy's model, ``proxy.go``): the listener accepts the
client and the proxy dials the upstream at once. If the dial fails the
client is closed (it sees a plain FIN, not a refusal). Once both sockets are
up, the two links are built from the proxy's toxics *at that moment* and
reading starts. When a link's stream ends, the proxy fully closes that
link's destination (TCP half-close is not preserved), which ends the other
link too: closing either side ends the whole connection. The connection is
*finished* when both sockets are closed; then its stage tasks are cancelled
and the owner forgets it.

Connections opened while a ``reset_peer`` toxic exists get ``SO_LINGER=0``
on both sockets, so every close of theirs is an RST (Toxiproxy does this too).

A *silenced* connection (``idle_timeout`` fired) drops everything in both
directions and never signals either peer; when a peer closes its socket the
proxy closes its own end of that socket only.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from progressbench.chaos.proxy.address import split_host_port
from progressbench.chaos.proxy.endpoint import SETUP, Endpoint
from progressbench.chaos.proxy.entry import ToxicEntry
from progressbench.chaos.proxy.link import Link
from progressbench.chaos.proxy.toxics import StatefulToxic
from progressbench.chaos.proxy.types import Clock, Direction

log = logging.getLogger(__name__)


class ConnectionOwner(Protocol):
    def connection_finished(self, connection: Connection) -> None: ...


class Connection:
    """A client socket, the server socket dialled for it, and the two links between them."""

    def __init__(self, owner: ConnectionOwner, client: Endpoint, *, clock: Clock, rng: random.Random) -> None:
        self.owner = owner
        self.client = client
        self.server: Endpoint | None = None
        self.up: Link | None = None
        self.down: Link | None = None
        self.clock = clock
        self.rng = rng
        self.silenced = False
        self._finished = False
        self._closing = False
        self._shared: dict[ToxicEntry, object] = {}
        self._rolls: dict[ToxicEntry, tuple[int, bool]] = {}
        self._dial: asyncio.Task[None] | None = None
        self._dialing = False
        self._leftovers: list[asyncio.Task[None]] = []
        client.on_lost = self._endpoint_lost

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def links(self) -> list[Link]:
        return [link for link in (self.up, self.down) if link is not None]

    # -- set-up -----------------------------------------------------------------

    def open(self, upstream: str, toxics: Callable[[], Sequence[ToxicEntry]]) -> None:
        """Dial ``upstream`` in the background; wire the links with the toxics current then."""
        self._dialing = True
        self._dial = asyncio.get_running_loop().create_task(self._open(upstream, toxics))

    async def _open(self, upstream: str, toxics: Callable[[], Sequence[ToxicEntry]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            host, port = split_host_port(upstream)
            _, server = await loop.create_connection(lambda: Endpoint("server"), host, port)
        except (OSError, ValueError) as exc:
            log.info("cannot reach upstream %s: %s; closing the client", upstream, exc)
            self._dialing = False
            self.client.close()
            self._endpoint_lost()  # in case the client was already gone
            return
        finally:
            self._dialing = False
        if self._closing or self.client.lost:
            server.abort()
            self._endpoint_lost()
            return
        self._attach(server, list(toxics()))

    def _attach(self, server: Endpoint, entries: list[ToxicEntry]) -> None:
        self.server = server
        server.on_lost = self._endpoint_lost
        if any(entry.kind.resets_peer for entry in entries):
            self.client.set_linger_zero()
            server.set_linger_zero()
        self.up = Link(self, Direction.UPSTREAM, self.client, server)
        self.down = Link(self, Direction.DOWNSTREAM, server, self.client)
        self.up.build([e for e in entries if e.applies_to(Direction.UPSTREAM)])
        self.down.build([e for e in entries if e.applies_to(Direction.DOWNSTREAM)])
        self.client.release(SETUP)
        server.release(SETUP)

    # -- LinkHost -----------------------------------------------------------------

    def roll(self, entry: ToxicEntry) -> bool:
        if not entry.kind.both_directions:
            return self.rng.random() < entry.toxicity
        # One roll per connection (and per update) for a toxic spanning both links.
        cached = self._rolls.get(entry)
        if cached is None or cached[0] != entry.generation:
            cached = (entry.generation, self.rng.random() < entry.toxicity)
            self._rolls[entry] = cached
        return cached[1]

    def state_for(self, entry: ToxicEntry) -> object:
        if not isinstance(entry.toxic, StatefulToxic):
            return None
        if not entry.kind.both_directions:
            return entry.toxic.new_state()
        if entry not in self._shared:
            self._shared[entry] = entry.toxic.new_state()
        return self._shared[entry]

    def silence(self) -> None:
        if self.silenced or self._finished:
            return
        self.silenced = True
        for link in self.links:
            self._leftovers.extend(link.go_silent())
        # Peers that already closed while we held their EOF: close our end now.
        for link in self.links:
            if link.ended:
                link.source.close()

    # -- chain edits ----------------------------------------------------------------

    async def add_toxic(self, entry: ToxicEntry) -> None:
        await asyncio.gather(*(link.add(entry) for link in self._links_for(entry)))

    async def update_toxic(self, entry: ToxicEntry) -> None:
        await asyncio.gather(*(link.update(entry) for link in self._links_for(entry)))

    async def remove_toxic(self, entry: ToxicEntry) -> None:
        await asyncio.gather(*(link.remove(entry) for link in self._links_for(entry)))
        self._shared.pop(entry, None)
        self._rolls.pop(entry, None)

    def _links_for(self, entry: ToxicEntry) -> list[Link]:
        return [link for link in self.links if entry.applies_to(link.direction)]

    # -- teardown -------------------------------------------------------------------

    def close(self) -> None:
        """Close both sockets now (FIN, or RST with linger 0); data inside toxics is lost."""
        if self._closing:
            return
        self._closing = True
        if self._dial is not None and not self._dial.done():
            self._dial.cancel()
            self._dialing = False
            self._leftovers.append(self._dial)
        for link in self.links:
            self._leftovers.extend(link.stop())
            link.sink.enabled = False
        self.client.close()
        if self.server is not None:
            self.server.close()
        self._endpoint_lost()

    def tasks(self) -> list[asyncio.Task[None]]:
        """Tasks still winding down (for an orderly shutdown to await)."""
        return [task for task in self._leftovers if not task.done()]

    def _endpoint_lost(self) -> None:
        if self._finished:
            return
        if not self.client.lost:
            return
        if self._dialing or (self.server is not None and not self.server.lost):
            return
        self._finished = True
        for link in self.links:
            self._leftovers.extend(link.stop())
        self.owner.connection_finished(self)
