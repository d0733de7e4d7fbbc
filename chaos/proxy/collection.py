"""All proxies of one server, by name (Toxiproxy's ``proxy_collection.go``).

Create, delete and populate are serialized by the collection's lock (the
name check and the bind happen under it); per-proxy work takes the proxy's
own lock after it, never the other way round.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from progressbench.chaos.proxy import codec
from progressbench.chaos.proxy.codec import ApiError
from progressbench.chaos.proxy.connection import Connection
from progressbench.chaos.proxy.model import ProxySpec
from progressbench.chaos.proxy.proxy import AlreadyStarted, Proxy, resolve_listen
from progressbench.chaos.proxy.types import Clock


class ProxyCollection:
    def __init__(
        self,
        *,
        clock: Clock,
        rng: random.Random,
        on_retire: Callable[[Proxy, Connection], None] | None = None,
        local_only: bool = True,
    ) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.local_only = local_only
        self._lock = asyncio.Lock()
        self._clock = clock
        self._rng = rng
        self._on_retire = on_retire

    def _new(self, spec: ProxySpec) -> Proxy:
        return Proxy(
            spec.name,
            spec.listen,
            spec.upstream,
            clock=self._clock,
            rng=self._rng,
            on_retire=self._on_retire,
            local_only=self.local_only,
        )

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise codec.proxy_not_found()
        return proxy

    async def create(self, spec: ProxySpec) -> Proxy:
        """A new proxy, started unless ``enabled`` is false (409 on a duplicate, 500 on bind)."""
        if not spec.name:
            raise codec.missing_field("name")
        codec.check_proxy_name(spec.name)
        if not spec.upstream:
            raise codec.missing_field("upstream")
        async with self._lock:
            if spec.name in self.proxies:
                raise codec.proxy_exists()
            proxy = self._new(spec)
            if spec.enabled is not False:
                await proxy.start()
            self.proxies[spec.name] = proxy
            return proxy

    async def delete(self, name: str) -> None:
        async with self._lock:
            proxy = self.get(name)
            async with proxy.lock:
                await proxy.stop()
            del self.proxies[name]

    async def populate(self, specs: list[ProxySpec]) -> tuple[list[Proxy], ApiError | None]:
        """Create or replace each entry in order; stop at the first failure.

        An existing proxy with the same resolved listen and upstream is kept
        untouched (toxics, connections, enabled state); a different one is
        stopped and replaced by a new proxy without toxics.
        """
        done: list[Proxy] = []
        async with self._lock:
            for spec in specs:
                try:
                    done.append(await self._add_or_replace(spec))
                except ApiError as exc:
                    return done, exc
        return done, None

    async def _add_or_replace(self, spec: ProxySpec) -> Proxy:
        existing = self.proxies.get(spec.name)
        if existing is not None:
            async with existing.lock:
                if not existing.differs(await resolve_listen(spec.listen), spec.upstream):
                    return existing
                await existing.stop()
        proxy = self._new(spec)
        if spec.enabled is not False:
            await proxy.start()
        self.proxies[spec.name] = proxy
        return proxy

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (``POST /reset``)."""
        for proxy in list(self.proxies.values()):
            async with proxy.lock:
                try:
                    await proxy.start()
                except AlreadyStarted:
                    pass
                await proxy.remove_all_toxics()

    async def close(self) -> None:
        """Stop every proxy (server shutdown)."""
        async with self._lock:
            for proxy in list(self.proxies.values()):
                async with proxy.lock:
                    await proxy.stop()
