"""The queue's HTTP pushes: one POST per attempt on kept-alive HTTP/1.1 connections, parsed by h11.

Why not httpx: a push is one small POST whose answer the queue reads for
its status and ``Retry-After`` only, at up to 500 a second. Through httpx
each one paid the client's request/response models, auth and redirect
layers, httpcore's pool bookkeeping (a scan of every connection per
request) and anyio's connect machinery; profiled while draining a backlog,
those were three quarters of the queue's time and capped it far below
Cloud Tasks' 500 dispatches/s. Here a push is the request's bytes written
and the answer parsed as it arrives, on a connection taken from a per-origin
stack of idle ones.

Two halves, so the HTTP is testable without a socket:

* :class:`Exchange` (sans-I/O): the request's bytes out, the response's
  bytes in, a :class:`PushAnswer` out once the response has ended (its body
  is read and dropped, so the connection can carry the next push), plus
  whether the connection may be reused;
* :class:`Pusher` (I/O): keeps idle connections per origin (at most
  ``max_idle`` each; the rest are closed), connects under a connect timeout,
  and closes a connection on any failure or cancellation (the caller's
  dispatch deadline) rather than reuse it mid-exchange.

Failures are :class:`PushError` with the name httpx gives the same failure
(``ConnectError``, ``ConnectTimeout``, ``ReadError``, ``WriteError``,
``RemoteProtocolError``): they become the attempt's outcome label and
``last_error``, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import h11

#: Bytes one read may take from the socket.
READ_SIZE = 64 * 1024
#: Idle connections kept per origin; more are closed once their push is answered.
MAX_IDLE = 100


class PushError(Exception):
    """The push got no complete answer; ``reason`` names how (httpx's names)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """What the queue reads from a push's response."""

    status: int
    retry_after: str | None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a push goes: the socket's address, and the request line's target."""

    scheme: str
    host: str
    port: int
    target: str

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def origin_of(url: str) -> Origin:
    """The origin and target of an ``http``/``https`` URL; ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port, target)


class PushTransport(Protocol):
    """What the dispatcher pushes through (:class:`Pusher`; the unit tests pass a stand-in)."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, connect_timeout_s: float
    ) -> PushAnswer: ...


class Exchange:
    """One request and its response on a connection's h11 state (sans-I/O)."""

    def __init__(self, connection: h11.Connection) -> None:
        self._h11 = connection
        self._status: int | None = None
        self._retry_after: str | None = None
        self._eof = False

    def request(self, origin: Origin, headers: Mapping[str, str], body: bytes) -> bytes:
        """The request's bytes: a POST with a JSON body and a ``Content-Length``."""
        fields = [
            ("host", origin.authority),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            *((name, value) for name, value in headers.items()),
        ]
        out = self._h11.send(h11.Request(method="POST", target=origin.target, headers=fields)) or b""
        if body:
            out += self._h11.send(h11.Data(data=body)) or b""
        return out + (self._h11.send(h11.EndOfMessage()) or b"")

    def feed(self, data: bytes) -> PushAnswer | None:
        """Response bytes in (``b""`` at EOF); the answer once the response has ended, else None.

        Raises :class:`PushError` (``RemoteProtocolError``) for a malformed
        response or one cut before its end.
        """
        self._eof = self._eof or not data
        try:
            self._h11.receive_data(data)
            while True:
                event = self._h11.next_event()
                if event is h11.NEED_DATA:
                    return None
                if isinstance(event, h11.Response):
                    self._status = event.status_code
                    for name, value in event.headers:
                        if name == b"retry-after":
                            self._retry_after = value.decode("latin-1")
                elif isinstance(event, h11.EndOfMessage):
                    assert self._status is not None
                    return PushAnswer(self._status, self._retry_after)
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    raise PushError("RemoteProtocolError")
                # InformationalResponse (1xx) and Data (the body, dropped): read on.
        except h11.ProtocolError:
            raise PushError("RemoteProtocolError") from None

    def reusable(self) -> bool:
        """After the answer: whether the connection may carry another request (and ready it)."""
        if not self._eof and self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            return True
        return False


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Pusher:
    """POSTs on kept-alive connections, idle ones stacked per origin (most recent first)."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self._max_idle = max_idle
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        #: Connections opened so far, for the tests and the curious.
        self.opened = 0

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, connect_timeout_s: float
    ) -> PushAnswer:
        """One POST and its answer; :class:`PushError` if none came (the caller bounds the wait)."""
        try:
            origin = origin_of(url)
        except ValueError:
            raise PushError("UnsupportedProtocol") from None
        key = (origin.scheme, origin.host, origin.port)
        connection = self._take(key)
        if connection is None:
            connection = await self._open(origin, connect_timeout_s)
        keep = False
        try:
            exchange = Exchange(connection.h11)
            try:
                connection.writer.write(exchange.request(origin, headers, body))
                await connection.writer.drain()
            except OSError:
                raise PushError("WriteError") from None
            while True:
                try:
                    data = await connection.reader.read(READ_SIZE)
                except OSError:
                    raise PushError("ReadError") from None
                answer = exchange.feed(data)
                if answer is not None:
                    keep = exchange.reusable()
                    return answer
        finally:
            if keep:
                self._give_back(key, connection)
            else:
                connection.close()

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    def _give_back(self, key: tuple[str, str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self._max_idle and connection.usable():
            idle.append(connection)
        else:
            connection.close()

    async def _open(self, origin: Origin, timeout_s: float) -> _Connection:
        tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=tls, limit=READ_SIZE
                )
        except TimeoutError:
            raise PushError("ConnectTimeout") from None
        except OSError:
            raise PushError("ConnectError") from None
        self.opened += 1
        return _Connection(reader, writer, h11.Connection(our_role=h11.CLIENT))

    async def aclose(self) -> None:
        """Close every idle connection (those in use close when their push ends)."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
        for connections in idle.values():
            for connection in connections:
                with contextlib.suppress(OSError):
                    await connection.writer.wait_closed()
