"""The mobile toxics Toxiproxy lacks, on real sockets: blackhole, idle_timeout, pause_reader.

The windows are real time (a tunnel while the server writes 30 lines, a 2 s
NAT timeout), so this file takes about 15 s. Tolerances: an event that must
not happen is watched for its whole window; an event that must happen gets
at least 1 s of slack.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from progressbench.chaos.client import AsyncProxyControl, ToxicSpec

from tests.helpers import UNIT, wait_until
from tests.integration.chaos.proxy_harness import (
    Clients,
    Peer,
    Servers,
    outcome,
    round_trip,
    settled,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

#: The tunnel lasts while the server writes this many lines into it (~3 s at one per 100 ms);
#: counting the server's lines rather than sleeping keeps the window honest on a slow machine.
TUNNEL_LINES = 30
LINE_PERIOD_S = 0.1


class LineServer:
    """Writes ``0\\n``, ``1\\n``, ... every 100 ms on each connection; records what it reads."""

    def __init__(self) -> None:
        self.connections = 0
        self.sent = 0
        self.peer = Peer()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        pump = asyncio.create_task(self._read(reader))
        try:
            while True:
                writer.write(f"{self.sent}\n".encode())
                self.sent += 1
                await writer.drain()
                await asyncio.sleep(LINE_PERIOD_S)  # the stream's cadence
        finally:
            pump.cancel()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(65536):
            self.peer.received += data
        self.peer.eof = True


async def test_blackhole_then_restore_continues_the_same_connection(
    actl: AsyncProxyControl, servers: Servers, clients: Clients
) -> None:
    """A blackhole (~3 s) stops bytes both ways with no FIN/RST; once removed, the SAME
    connection delivers every held line exactly once, in order, and carries on."""
    server = LineServer()
    proxy = await actl.create_proxy(unique("tunnel"), await servers.start(server))
    reader, writer = await clients.open(proxy)
    lines: list[tuple[float, int]] = []
    ended: list[str] = []

    async def read_lines() -> None:
        while line := await reader.readline():
            lines.append((time.monotonic(), int(line)))
        ended.append("eof")

    consumer = asyncio.create_task(read_lines())
    try:
        await wait_until(lambda: len(lines) >= 5, 5, "the first lines")
        await actl.add_toxic(proxy.name, ToxicSpec("blackhole"))
        added, sent_at_add = time.monotonic(), server.sent
        writer.write(b"ping during tunnel\n")
        await wait_until(lambda: server.sent >= sent_at_add + TUNNEL_LINES, 10, "the tunnel's lines")
        during = [n for t, n in lines if added + 0.25 < t]
        upstream_during = bytes(server.peer.received)
        sent_before_restore = server.sent
        await actl.remove_toxic(proxy.name, "blackhole_downstream")
        restored = time.monotonic()
        await wait_until(
            lambda: lines and lines[-1][1] >= sent_before_restore + 5, 5, "lines after the tunnel"
        )
    finally:
        consumer.cancel()

    assert during == [], "bytes leaked through the blackhole"
    assert ended == [], "the client saw EOF"
    assert upstream_during == b"", "client bytes reached the server during the tunnel"
    numbers = [n for _, n in lines]
    assert numbers == list(range(len(numbers))), "a line was lost, duplicated or reordered"
    assert server.connections == 1, "the server saw a reconnection"
    burst = [t for t, n in lines if sent_before_restore - 10 <= n < sent_before_restore]
    assert burst and max(burst) - restored < 1.0, "held lines were not released promptly"
    await wait_until(lambda: bytes(server.peer.received) == b"ping during tunnel\n", 2, "ping")


async def test_idle_timeout_blackholes_idle_connections_only(
    actl: AsyncProxyControl, servers: Servers, clients: Clients
) -> None:
    """idle_timeout 2 s: 1 s heartbeats keep a connection alive past 5 s; an idle one goes
    silent (no data, no EOF, no RST) until the client's own watchdog fires."""
    peers: list[Peer] = []

    async def echo_recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer()
        peers.append(peer)
        while data := await reader.read(65536):
            peer.received += data
            writer.write(data)
            await writer.drain()
        peer.eof = True

    proxy = await actl.create_proxy(unique("cgnat"), await servers.start(echo_recording))
    await actl.add_toxic(proxy.name, ToxicSpec("idle_timeout", attributes={"timeout": 2000}))

    async def heartbeating() -> int:
        reader, writer = await clients.open(proxy)
        started = time.monotonic()
        echoed = 0
        for beat in range(7):  # one heartbeat per second, t = 0 .. 6 s
            await asyncio.sleep(max(0.0, started + beat - time.monotonic()))
            await round_trip(reader, writer, b"hb\n", 1.5)
            echoed += 1
        return echoed

    async def idle() -> tuple[str, bytes]:
        reader, writer = await clients.open(proxy)
        await round_trip(reader, writer, b"hello\n", 1)
        await asyncio.sleep(3.0)  # stay idle past the 2 s NAT timeout
        writer.write(b"late\n")
        return await outcome(reader, 2.0)  # the client's watchdog

    beats, silent = await asyncio.gather(heartbeating(), idle())
    assert beats == 7
    assert silent == ("timeout", b""), "the idle connection was not silently blackholed"
    idle_peer = next(p for p in peers if p.received.startswith(b"hello"))
    assert bytes(idle_peer.received) == b"hello\n", "bytes got through after the timeout"
    assert not idle_peer.eof, "the server saw a FIN"

    reader, writer = await clients.open(proxy)
    assert await round_trip(reader, writer, b"new connection\n", 2) < 1


async def test_pause_reader_backs_up_the_server_and_loses_nothing(
    actl: AsyncProxyControl, servers: Servers, clients: Clients
) -> None:
    """While pause_reader is on, the server's writes stall; after removal every byte arrives."""
    pattern = bytes(range(251)) * 4096  # ~1 MB, so chunk edges do not line up
    total = 32 * len(pattern)
    progress = {"written": 0}

    async def bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(32):
            writer.write(pattern)
            await writer.drain()
            progress["written"] += len(pattern)
        await reader.read()

    proxy = await actl.create_proxy(unique("sleep"), await servers.start(bulk))
    await actl.add_toxic(proxy.name, ToxicSpec("pause_reader"))
    reader, _ = await clients.open(proxy)
    received = bytearray()

    async def drain_client() -> None:
        while data := await reader.read(1 << 20):
            received.extend(data)

    consumer = asyncio.create_task(drain_client())
    try:
        await wait_until(lambda: progress["written"] > 0, 5, "the server to start writing")
        stalled_at = await settled(lambda: progress["written"], 1.0, 10, "the writes to stall")
        assert stalled_at < total, "the server's writes did not back up"
        assert len(received) == 0, "data reached the client while paused"
        await actl.remove_toxic(proxy.name, "pause_reader_downstream")
        await wait_until(lambda: len(received) >= total, 20, "every byte after the pause")
    finally:
        consumer.cancel()
    assert len(received) == total
    assert bytes(received) == pattern * 32


async def test_pause_reader_close_after_closes_the_client_side(
    actl: AsyncProxyControl, servers: Servers, clients: Clients
) -> None:
    """close_after 500: after 0.5 s paused the proxy closes the client's socket (FIN)."""
    server = LineServer()
    proxy = await actl.create_proxy(unique("reclaim"), await servers.start(server))
    reader, _ = await clients.open(proxy)
    assert await asyncio.wait_for(reader.readline(), 5 * UNIT) == b"0\n"
    # Timed from before the request: the toxic starts somewhere inside the API call, and on a
    # busy machine the response can come back tens of milliseconds later.
    adding = time.monotonic()
    await actl.add_toxic(proxy.name, ToxicSpec("pause_reader", attributes={"close_after": 500}))
    result, _ = await outcome(reader, 5)
    assert result == "eof"
    assert 0.5 - 0.02 <= time.monotonic() - adding <= 0.5 + 1.0


async def test_mobile_toxics_are_listed_under_their_stream(actl: AsyncProxyControl) -> None:
    """The three new types use the standard API and show up like any toxic."""
    proxy = await actl.create_proxy(unique("types"), "127.0.0.1:9")
    await actl.add_toxic(proxy.name, ToxicSpec("blackhole", stream="upstream"))
    await actl.add_toxic(proxy.name, ToxicSpec("idle_timeout", attributes={"timeout": 1}))
    await actl.add_toxic(proxy.name, ToxicSpec("pause_reader", attributes={"close_after": 5}))
    listed = await actl.toxics(proxy.name)
    assert [(t.name, t.stream, dict(t.attributes)) for t in listed] == [
        ("blackhole_upstream", "upstream", {"rto_initial": 0, "rto_max": 120_000, "released": 0}),
        ("idle_timeout_downstream", "downstream", {"timeout": 1}),
        ("pause_reader_downstream", "downstream", {"close_after": 5}),
    ]
