"""One named proxy: a listener, its upstream address, its toxics and its live connections.

Semantics follow Toxiproxy's ``proxy.go`` and ``toxic_collection.go``:

* ``start`` binds the stored ``listen`` address (after which ``listen``
  shows the resolved ``ip:port``); ``stop`` closes the listener and every
  connection (FIN; data inside toxics is lost). New connects to a stopped
  proxy are refused by the kernel.
* A toxic edit applies to every live connection and to future ones. Edits,
  start, stop and update of one proxy are serialized by :attr:`Proxy.lock`;
  the toxic list changes and the set of connections to edit is taken in the
  same synchronous step, so a connection is wired either before or after
  an edit, never half-way.
* Toxic names are unique across both streams. The listing order is the
  upstream toxics, then the downstream ones, each in the order added.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from progressbench.chaos.proxy import codec
from progressbench.chaos.proxy.address import (
    AddressError,
    ListenError,
    ListenRefused,
    bind_listener,
    listen_string,
)
from progressbench.chaos.proxy.address import resolve_listen as _resolve_listen
from progressbench.chaos.proxy.codec import ApiError
from progressbench.chaos.proxy.connection import Connection
from progressbench.chaos.proxy.endpoint import Endpoint
from progressbench.chaos.proxy.entry import ToxicEntry
from progressbench.chaos.proxy.model import ProxySpec, ToxicPatch, ToxicSpec
from progressbench.chaos.proxy.toxics import REGISTRY
from progressbench.chaos.proxy.types import Clock, Direction

STOP_GRACE = 1.0
"""Seconds ``stop`` waits for cancelled stage tasks to finish."""


class AlreadyStarted(Exception):
    """``start`` on an enabled proxy (``/reset`` ignores it, as Toxiproxy does)."""


async def resolve_listen(listen: str) -> str:
    """Go's ``ResolveTCPAddr`` text for ``listen``, or a 500 with its error."""
    try:
        return await _resolve_listen(listen)
    except AddressError as exc:
        raise ApiError(str(exc), 500) from None


class Proxy:
    """A listener forwarding to one upstream through a chain of toxics per direction."""

    def __init__(
        self,
        name: str,
        listen: str,
        upstream: str,
        *,
        clock: Clock,
        rng: random.Random,
        on_retire: Callable[[Proxy, Connection], None] | None = None,
        local_only: bool = False,
    ) -> None:
        self.name = name
        self.local_only = local_only
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics: list[ToxicEntry] = []
        self.connections: set[Connection] = set()
        self.lock = asyncio.Lock()
        self._clock = clock
        self._rng = rng
        self._on_retire = on_retire
        self._server: asyncio.Server | None = None

    # -- listing ---------------------------------------------------------------

    def listed_toxics(self) -> list[ToxicEntry]:
        return [t for t in self.toxics if t.direction is Direction.UPSTREAM] + [
            t for t in self.toxics if t.direction is Direction.DOWNSTREAM
        ]

    def find_toxic(self, name: str) -> ToxicEntry | None:
        for entry in self.toxics:
            if entry.name == name:
                return entry
        return None

    def encode(self) -> str:
        return codec.encode_proxy(
            self.name,
            self.listen,
            self.upstream,
            self.enabled,
            (encode_entry(entry) for entry in self.listed_toxics()),
        )

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Bind and accept; :class:`AlreadyStarted` if enabled, a 500 if the bind fails."""
        if self.enabled:
            raise AlreadyStarted(self.name)
        try:
            sock = await bind_listener(self.listen, local_only=self.local_only)
        except ListenRefused as exc:
            raise ApiError(str(exc), 400) from None
        except ListenError as exc:
            raise ApiError(str(exc), 500) from None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Endpoint("client", on_made=self._accepted), sock=sock)
        self.listen = listen_string(sock)
        self.enabled = True

    async def stop(self) -> None:
        """Close the listener and every connection (FIN); a no-op when disabled."""
        if not self.enabled:
            return
        self.enabled = False
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks: list[asyncio.Task[None]] = []
        for connection in list(self.connections):
            connection.close()
            tasks.extend(connection.tasks())
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE)

    async def update(self, spec: ProxySpec) -> None:
        """PATCH: a changed listen/upstream restarts the proxy (toxics kept); then ``enabled``."""
        differs = self.listen != await resolve_listen(spec.listen) or self.upstream != spec.upstream
        if differs:
            await self.stop()
            self.listen = spec.listen
            self.upstream = spec.upstream
        if spec.enabled is not None and spec.enabled != self.enabled:
            if spec.enabled:
                await self.start()
            else:
                await self.stop()

    def differs(self, resolved_listen: str, upstream: str) -> bool:
        return self.listen != resolved_listen or self.upstream != upstream

    def _accepted(self, client: Endpoint) -> None:
        if not self.enabled:
            client.abort()
            return
        connection = Connection(self, client, clock=self._clock, rng=self._rng)
        self.connections.add(connection)
        connection.open(self.upstream, lambda: self.toxics)

    def connection_finished(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if self._on_retire is not None:
            self._on_retire(self, connection)

    # -- toxics ---------------------------------------------------------------------

    async def add_toxic(self, spec: ToxicSpec) -> ToxicEntry:
        """Checks in Toxiproxy's order: stream, type, duplicate name, attributes."""
        direction = Direction.parse(spec.stream)
        if direction is None:
            raise codec.invalid_stream()
        kind = REGISTRY.get(spec.type)
        if kind is None:
            raise codec.invalid_toxic_type()
        name = spec.resolved_name
        if self.find_toxic(name) is not None:
            raise codec.toxic_exists()
        toxic = codec.apply_attributes(kind, kind.factory(), spec.attributes)
        entry = ToxicEntry(name, spec.type, spec.stream, direction, spec.toxicity, toxic, kind)
        self.toxics.append(entry)
        targets = list(self.connections)
        await asyncio.gather(*(c.add_toxic(entry) for c in targets))
        return entry

    async def update_toxic(self, name: str, patch: ToxicPatch) -> ToxicEntry:
        entry = self.find_toxic(name)
        if entry is None:
            raise codec.toxic_not_found()
        entry.toxic = codec.apply_attributes(entry.kind, entry.toxic, patch.attributes)
        if patch.toxicity is not None:
            entry.toxicity = patch.toxicity
        entry.generation += 1
        targets = list(self.connections)
        await asyncio.gather(*(c.update_toxic(entry) for c in targets))
        return entry

    async def remove_toxic(self, name: str) -> None:
        entry = self.find_toxic(name)
        if entry is None:
            raise codec.toxic_not_found()
        self.toxics.remove(entry)
        targets = list(self.connections)
        await asyncio.gather(*(c.remove_toxic(entry) for c in targets))

    async def remove_all_toxics(self) -> None:
        for entry in self.listed_toxics():
            await self.remove_toxic(entry.name)


def encode_entry(entry: ToxicEntry) -> str:
    return codec.encode_toxic(entry.name, entry.type, entry.stream, entry.toxicity, entry.attributes())
