"""The chaos proxy server: the HTTP API (uvicorn) and every proxy, in one event loop.

Start-up: bind the API socket (or adopt an inherited one), start uvicorn on
it in a task of the current loop, wait until it accepts, then create the
proxies of the optional config (the ``/populate`` format). Shutdown
(:meth:`ChaosProxyServer.stop`): stop the API first, so no edit races the
teardown (in-flight requests get up to 5 s), then stop every proxy, which
closes every proxied connection with a FIN. uvicorn's own signal handling is
disabled; the process entry point (``python -m progressbench.chaos.proxy``) maps
SIGTERM/SIGINT to :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections.abc import Callable, Generator, Mapping, Sequence
from types import TracebackType

import uvicorn
from progressbench.chaos.proxy import codec
from progressbench.chaos.proxy.address import join_host_port
from progressbench.chaos.proxy.api import ToxiproxyApi
from progressbench.chaos.proxy.clock import LoopClock
from progressbench.chaos.proxy.codec import ApiError
from progressbench.chaos.proxy.collection import ProxyCollection
from progressbench.chaos.proxy.metrics import ProxyMetrics
from progressbench.chaos.proxy.model import ProxySpec
from progressbench.chaos.proxy.slowheaders import with_header_timeout
from progressbench.chaos.proxy.types import Clock

from progressbench.core.errors import ConfigError

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 10.0
SHUTDOWN_GRACE = 5
#: A client must send a request head within this long (Toxiproxy's API server: 15 s read timeout).
HEADER_TIMEOUT = 15.0


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the embedding process owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ChaosProxyServer:
    """Toxiproxy-compatible API plus proxies. ``async with ChaosProxyServer() as s: s.url``.

    ``sock``: an already-bound (listening) socket for the API, e.g. inherited
    through ``--fd``; otherwise ``host``/``port`` are bound (port 0 = any).
    ``seed`` seeds the randomness of toxicity rolls, jitter and slicing.
    ``clock`` replaces the event loop's clock (tests only).
    ``allow_external_listen``: let proxies listen beyond loopback and on ports
    below 1024 (off by default: issue #13, probe 7).
    ``proxy_metrics`` / ``runtime_metrics``: serve ``/metrics`` with the byte
    counters / the process's collectors (Toxiproxy's ``-proxy-metrics`` and
    ``-runtime-metrics``); with neither there is no ``/metrics``, as there.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        seed: int | None = None,
        clock: Clock | None = None,
        allow_external_listen: bool = False,
        header_timeout_s: float = HEADER_TIMEOUT,
        proxy_metrics: bool = False,
        runtime_metrics: bool = False,
    ) -> None:
        self._host = host
        self._proxy_metrics = proxy_metrics
        self._runtime_metrics = runtime_metrics
        self._header_timeout_s = header_timeout_s
        self._local_only = not allow_external_listen
        self._port = port
        self._sock = sock
        self._rng = random.Random(seed)
        self._clock = clock
        self._collection: ProxyCollection | None = None
        self._uvicorn: _EmbeddedUvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{join_host_port(host, port)}"

    @property
    def proxies(self) -> ProxyCollection:
        if self._collection is None:
            raise RuntimeError("the server is not started")
        return self._collection

    async def start(self) -> None:
        """Serve the API; returns once it accepts connections."""
        if self._task is not None:
            raise RuntimeError("already started")
        sock = self._sock or socket.create_server((self._host, self._port), backlog=1024)
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.listen(1024)  # an inherited socket that was bound but not yet listening
        self._address = sock.getsockname()[:2]
        metrics = ProxyMetrics(
            lambda: self.proxies.proxies.values(),
            proxy_metrics=self._proxy_metrics,
            runtime=self._runtime_metrics,
        )
        self._collection = ProxyCollection(
            clock=self._clock or LoopClock(),
            rng=self._rng,
            on_retire=metrics.retire,
            local_only=self._local_only,
        )
        api = ToxiproxyApi(
            self._collection, metrics if self._proxy_metrics or self._runtime_metrics else None
        )
        config = uvicorn.Config(
            api.app(),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=with_header_timeout(self._header_timeout_s),
            ws="none",
            server_header=False,
            timeout_keep_alive=60,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        self._uvicorn = _EmbeddedUvicorn(config)
        self._task = asyncio.get_running_loop().create_task(self._uvicorn.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT
        while not self._uvicorn.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the API server exited during start-up")
            if loop.time() > deadline:
                raise RuntimeError("the API server did not start in time")
            await asyncio.sleep(0.005)
        log.info("chaos proxy API on %s", self.url)

    async def populate(self, entries: Sequence[Mapping[str, object]]) -> None:
        """Create the proxies of a config file (``/populate`` format); ConfigError on failure."""
        try:
            specs = codec.decode_populate(json.dumps(list(entries)).encode())
            _, error = await self.proxies.populate(specs)
        except ApiError as exc:
            error = exc
        if error is not None:
            raise ConfigError(f"proxy config: {error.message}")

    async def stop(self) -> None:
        """Stop the API, then every proxy and connection. Idempotent."""
        if self._uvicorn is not None and self._task is not None:
            self._uvicorn.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._collection is not None:
            await self._collection.close()

    async def __aenter__(self) -> ChaosProxyServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    host: str = "127.0.0.1",
    port: int = 8474,
    *,
    sock: socket.socket | None = None,
    config: Sequence[Mapping[str, object]] | None = None,
    seed: int | None = None,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    allow_external_listen: bool = False,
    proxy_metrics: bool = False,
    runtime_metrics: bool = False,
) -> None:
    """Run a chaos proxy server until ``stop`` is set (or the task is cancelled).

    ``ready(url)`` is called once the API accepts connections and the
    ``config`` proxies exist. Shutdown is clean either way.
    """
    server = ChaosProxyServer(
        host,
        port,
        sock=sock,
        seed=seed,
        allow_external_listen=allow_external_listen,
        proxy_metrics=proxy_metrics,
        runtime_metrics=runtime_metrics,
    )
    await server.start()
    try:
        if config:
            await server.populate(config)
        if ready is not None:
            ready(server.url)
        if stop is None:
            await asyncio.Event().wait()
        else:
            await stop.wait()
    finally:
        await server.stop()


__all__ = ["ChaosProxyServer", "ProxySpec", "serve"]
