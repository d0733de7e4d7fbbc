"""Real-socket helpers for the chaos proxy tests: upstream servers, clients, waiting.

Every socket opened here is closed by the owning fixture; every wait has a
deadline scaled by ``tests.helpers.UNIT`` (waiting on a condition is
``tests.helpers.wait_until``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from progressbench.chaos.client import ProxyInfo

from tests.helpers import UNIT

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def settled(value: Callable[[], int], quiet: float, timeout: float, what: str) -> int:
    """Wait until ``value()`` has not changed for ``quiet`` seconds; return it."""
    deadline = time.monotonic() + timeout * UNIT
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * UNIT:.1f}s waiting for {what}")
        await asyncio.sleep(0.02)
        current = value()
        if current != last:
            last, since = current, time.monotonic()
    return last


async def outcome(reader: asyncio.StreamReader, timeout: float) -> tuple[str, bytes]:
    """Read until the stream ends: ("eof" | "reset" | "timeout", bytes received)."""
    received = bytearray()
    deadline = time.monotonic() + timeout * UNIT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout", bytes(received)
        try:
            data = await asyncio.wait_for(reader.read(65536), remaining)
        except TimeoutError:
            return "timeout", bytes(received)
        except ConnectionResetError:
            return "reset", bytes(received)
        if not data:
            return "eof", bytes(received)
        received += data


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


@dataclass
class Peer:
    """What an upstream server saw of one connection."""

    received: bytearray = field(default_factory=bytearray)
    eof: bool = False
    written: int = 0


class Servers:
    """Upstream servers on 127.0.0.1 port 0, closed (with their connections) at teardown."""

    def __init__(self) -> None:
        self._servers: list[asyncio.Server] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[object]] = set()
        self.peers: list[Peer] = []

    async def start(self, handler: Handler) -> str:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            self._writers.append(writer)
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await handler(reader, writer)
            writer.close()

        server = await asyncio.start_server(run, "127.0.0.1", 0)
        self._servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    def closed_port(self) -> str:
        """An address nobody listens on (bound then released)."""
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return f"127.0.0.1:{sock.getsockname()[1]}"

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.sleep(0)
        for writer in self._writers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)
        for server in self._servers:
            await server.wait_closed()


class Clients:
    """Client connections to proxies, closed at teardown."""

    def __init__(self) -> None:
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self, proxy: ProxyInfo) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = proxy.address
        reader, writer = await asyncio.open_connection(host, port)
        self._writers.append(writer)
        return reader, writer

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        for writer in self._writers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)


async def round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes, timeout: float
) -> float:
    """Send ``payload`` to an echo upstream and time until it all came back."""
    started = time.monotonic()
    writer.write(payload)
    await asyncio.wait_for(reader.readexactly(len(payload)), timeout * UNIT)
    return time.monotonic() - started
