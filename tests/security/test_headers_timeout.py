"""Probe 12: a client that trickles its request head is cut off after a bounded time.

Before the fix, slow-header connections to the API, the realtime server and
the chaos proxy's API stayed open indefinitely (uvicorn bounds keep-alive
idling, not a request head in progress). Now every HTTP service closes a
connection whose head is not complete within the header timeout (the
stack's is ``Timing.header_timeout()``: 1 s at these tests' time scale;
the chaos API's is 15 s, like Toxiproxy's read timeout, 1 s here); the rooms'
publish parser is cut by the websockets opening-handshake timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
from progressbench.chaos.proxy.server import ChaosProxyServer
from progressbench.transports.relay.rooms.config import RoomsConfig
from progressbench.transports.relay.rooms.connection import connection_class
from progressbench.transports.relay.rooms.hub import RoomHub
from progressbench.transports.relay.rooms.meters import RoomMeters
from websockets.asyncio.server import serve

from progressbench.app.supervisor import Stack
from progressbench.kit.meters import Meters
from tests.helpers import UNIT
from tests.integration.conftest import running_stack


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def trickle_until_closed(host: str, port: int, first: bytes) -> float:
    """Send ``first`` then one header line every 0.2 s, never the blank line; seconds until EOF."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    try:
        writer.write(first)
        while time.monotonic() - started < 20 * UNIT:
            try:
                data = await asyncio.wait_for(reader.read(1024), 0.2)
            except TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
                continue
            except ConnectionResetError:  # closed while our last line was unread: a reset, not a FIN
                return time.monotonic() - started
            if not data:
                return time.monotonic() - started
        raise AssertionError(f"the connection was still open after {20 * UNIT:.0f}s of trickled headers")
    finally:
        writer.close()


async def full_request(host: str, port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), 10 * UNIT)
    finally:
        writer.close()


HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("headers")
    with running_stack(run_dir, module_database_url, transports=("sse", "realtime"), chaos=False) as running:
        yield running


@pytest.mark.integration
@pytest.mark.parametrize("role", ["api", "realtime"])
async def test_services_cut_slow_headers(stack: Stack, role: str) -> None:
    host, port = address(stack.endpoints()[role])
    await trickle_until_closed(host, port, HEAD)
    assert (await full_request(host, port, "/healthz")).startswith(b"HTTP/1.1 200")


@pytest.fixture
async def chaos() -> AsyncIterator[ChaosProxyServer]:
    async with ChaosProxyServer(header_timeout_s=1.0) as server:
        yield server


async def test_the_chaos_api_cuts_slow_headers(chaos: ChaosProxyServer) -> None:
    host, port = chaos.address
    await trickle_until_closed(host, port, b"GET /version HTTP/1.1\r\nHost: x\r\n")
    assert (await full_request(host, port, "/version")).startswith(b"HTTP/1.1 200")


async def test_a_keep_alive_connection_gets_a_new_deadline_per_request(chaos: ChaosProxyServer) -> None:
    """A first request answered, then a second head trickled: cut too (the deadline re-arms)."""
    host, port = chaos.address
    first = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /version HTTP/1.1\r\nHost: x\r\n"
    await trickle_until_closed(host, port, first)


async def test_rooms_cut_a_slow_publish() -> None:
    hub = RoomHub("s" * 32, RoomsConfig(), RoomMeters(Meters("rooms", 1)))
    async with serve(
        hub.handler,
        "127.0.0.1",
        0,
        process_request=hub.admit,
        create_connection=connection_class(hub.publish),
        open_timeout=1.0,
    ) as server:
        host, port = next(iter(server.sockets)).getsockname()[:2]
        await trickle_until_closed(host, port, b"POST /parties/main/x HTTP/1.1\r\nHost: x\r\n")
