"""The project URL a supabase client is given: a path router in front of auth, REST and Realtime.

``python -m progressbench.transports.realtime.gateway`` (service role ``supabase``).

The official client derives every address from one base URL: ``<url>/auth/v1``
(sign-in), ``<url>/rest/v1`` (the table read) and ``<url>/realtime/v1/websocket``.
A Supabase project answers all three at one host through its API gateway (Kong),
which routes by path prefix. This process plays that gateway for the testbed:

* ``/auth/v1/...`` and ``/rest/v1/...`` go to the API (its GoTrue-compatible
  sign-in and the PostgREST subset, :mod:`~progressbench.transports.realtime.rest`);
* ``/realtime/v1/...`` goes to the realtime server;
* anything else: ``404 {"message": "no Route matched with those values"}`` (Kong's answer).

It routes per TCP connection, not per request, and relays bytes untouched
(websocket frames of any serializer version, request and response bodies):
the head of the connection's first request picks the upstream, the rest is
spliced both ways. So that a kept-alive connection never carries a second
request to the wrong service, a plain HTTP request is forwarded with
``Connection: close`` (the client opens a new connection for its next one);
an upgrade (the websocket) keeps its headers. A close or a reset on either
side closes the other, so a cut the chaos proxy makes in front of this
gateway reaches the server behind it as a closed socket, and a server that
closes its socket closes the phone's. Each phone cell reaches this gateway
through its own chaos proxy (``client_facing``), so every byte of the
supabase client still crosses the cell's faults; the gateway to upstream hop
is loopback and never faulted.

The admin socket answers ``GET /healthz`` and ``GET /metrics`` (connections
routed, per upstream). Shutdown (SIGTERM): stop accepting, close every
relayed connection, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

from prometheus_client import Counter

from progressbench.core.config import ServiceConfig
from progressbench.kit.meters import Meters
from progressbench.kit.runtime import mark_ready, start_service

log = logging.getLogger(__name__)

#: Path prefix -> the service (peer role) that answers it.
ROUTES: Mapping[str, str] = {"/auth/v1": "api", "/rest/v1": "api", "/realtime/v1": "realtime"}
#: The most a request head may take before it is refused (Kong's default large header buffers: 4 x 8k).
MAX_HEAD_BYTES = 32 * 1024
CHUNK = 64 * 1024


def route(target: str) -> str | None:
    """The peer role that answers the request target ``target`` (path and query), or None."""
    path = urlsplit(target).path
    for prefix, role in ROUTES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return role
    return None


def rewrite_head(head: bytes) -> tuple[str, bytes]:
    """The request target and the head to forward: ``Connection: close`` unless it is an upgrade.

    ``head`` is the request line and header lines up to and including the blank line.
    Raises ValueError for a head that is not an HTTP/1.x request.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x request line")
    target = parts[1].decode("latin-1")
    headers = [line for line in lines[1:] if line]
    upgrade = any(line.lower().startswith(b"upgrade:") for line in headers)
    if not upgrade:
        headers = [line for line in headers if not line.lower().startswith(b"connection:")]
        headers.append(b"Connection: close")
    return target, b"\r\n".join([lines[0], *headers, b"", b""])


def _answer(status: str, body: dict[str, object] | bytes, content_type: str = "application/json") -> bytes:
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(payload)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + payload


class Gateway:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.upstreams = {
            role: urlsplit(url) for role, url in config.peers.items() if role in ROUTES.values()
        }
        self.head_timeout = config.timing.header_timeout()
        self.meters = Meters(config.role, config.concurrency, config.timing)
        self.routed = Counter(
            "pb_gateway_connections", "Connections routed, per upstream", ["service", "upstream"],
            registry=self.meters.registry,
        )  # fmt: skip
        self.tasks: set[asyncio.Task[None]] = set()

    async def _head(self, reader: asyncio.StreamReader) -> bytes:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One phone connection: read the first head, pick the upstream, splice until either side ends."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            try:
                head = await self._head(reader)
                target, forward = rewrite_head(head)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                with contextlib.suppress(ConnectionError):
                    writer.write(_answer("400 Bad Request", {"message": "Bad request"}))
                return
            role = route(target)
            upstream = self.upstreams.get(role or "")
            if upstream is None or upstream.hostname is None or upstream.port is None:
                writer.write(_answer("404 Not Found", {"message": "no Route matched with those values"}))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(upstream.hostname, upstream.port)
            except OSError as exc:
                log.warning("upstream %s unreachable: %s", role, exc)
                writer.write(
                    _answer(
                        "502 Bad Gateway",
                        {"message": "An invalid response was received from the upstream server"},
                    )
                )
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
            self.routed.labels(self.config.role, role).inc()
            up_writer.write(forward)
            await _splice(reader, writer, up_reader, up_writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self.tasks.discard(task)

    async def serve_admin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target, _ = rewrite_head(await self._head(reader))
            path = urlsplit(target).path
            if path == "/metrics":
                writer.write(_answer("200 OK", self.meters.exposition(), "text/plain; version=0.0.4"))
            elif path == "/healthz":
                body: dict[str, object] = {
                    "status": "ok",
                    "role": self.config.role,
                    "instance": self.config.instance,
                }
                writer.write(_answer("200 OK", body))
            else:
                writer.write(_answer("404 Not Found", {"message": "not found"}))
            await writer.drain()
        except (
            asyncio.LimitOverrunError,
            asyncio.IncompleteReadError,
            TimeoutError,
            ValueError,
            ConnectionError,
        ):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (half-close); backpressure through ``drain``."""
    while chunk := await reader.read(CHUNK):
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Both directions at once; the upstream's end, or an error either way, ends the connection."""
    inbound = asyncio.create_task(_pipe(reader, up_writer))
    outbound = asyncio.create_task(_pipe(up_reader, writer))
    try:
        done, _ = await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
        if inbound in done and inbound.exception() is None:
            # The phone finished sending (half-close): its answer may still be on the way.
            await asyncio.wait({outbound})
    finally:
        for task in (inbound, outbound):
            task.cancel()
        for task in (inbound, outbound):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        up_writer.close()
        with contextlib.suppress(Exception):
            await up_writer.wait_closed()


async def serve(config: ServiceConfig, listen: socket.socket, admin: socket.socket | None) -> None:
    gateway = Gateway(config)
    limit = MAX_HEAD_BYTES
    server = await asyncio.start_server(gateway.serve_client, sock=listen, limit=limit)
    servers = [server]
    if admin is not None:
        servers.append(await asyncio.start_server(gateway.serve_admin, sock=admin, limit=limit))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    mark_ready()
    await stop.wait()
    for each in servers:
        each.close()
    for task in list(gateway.tasks):
        task.cancel()
    await asyncio.gather(*gateway.tasks, return_exceptions=True)


def main() -> int:
    started = start_service()
    if started is None:
        return 2
    config, listen, admin = started
    asyncio.run(serve(config, listen, admin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
