"""One long-lived HTTP/1.1 GET on a plain asyncio connection, parsed by h11: the light stream reader.

Why not httpx: a phone that only *holds* an event stream for minutes does
not need a client, a pool, httpcore's connection and anyio's stream
wrappers around one socket. Those cost ~36 KB per phone, where a bare
asyncio connection costs 5-6 KB, and a load process must hold 10,000
phones at <= 15 KB each (issue #16). The phone still creates its job with
httpx (a short call, that client closed at once); only the stream is read
here.

Two halves, so the HTTP is testable without a socket:

* :class:`ResponseReader` (sans-I/O): the request's bytes out, the
  response's bytes in, :class:`Head` / body ``bytes`` / :data:`END` out.
  h11 handles both a ``Content-Length`` body and chunked transfer-encoding
  (and a body delimited by the close); a malformed answer or a body cut
  before its end is a :class:`StreamError` (``RemoteProtocolError``).
* :func:`open_stream` (I/O): connects under a connect timeout, sends the
  request, waits for the head (no read timeout: the caller's idle watchdog
  decides how long silence may last, per :meth:`HttpStream.__anext__`) and
  returns the :class:`HttpStream` (the socket's protocol and the body's
  reader in one object), whose body is read chunk by chunk; the caller
  closes it.

Failures are :class:`StreamError` with the name httpx gives the same
failure (``ConnectError``, ``ConnectTimeout``, ``ReadError``,
``RemoteProtocolError``), so a drop's reason reads the same whichever
client read the stream. No task is started per stream or per chunk: the
protocol feeds h11 as bytes arrive and wakes the one reader.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import h11

#: Body bytes buffered unread before the socket stops reading (the reader is slower than the wire).
HIGH_WATER = 256 * 1024
#: Bytes one read may take from the socket (into the thread's shared receive buffer).
READ_SIZE = 64 * 1024


class StreamError(Exception):
    """The connection could not be made or broke; ``reason`` names how (httpx's names)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: the socket's address and the request line's target."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def target_of(base_url: str, href: str) -> Target:
    """``href`` against the API's base URL, the way httpx's ``base_url`` joins them.

    An absolute ``href`` stands alone; a relative one is appended to the
    base's path (``http://h/api`` + ``/sse/x`` is ``/api/sse/x``), not
    resolved RFC 3986 style, so a base URL with a path prefix keeps it.
    """
    if href.startswith(("http://", "https://")):
        url = urlsplit(href)
        path = url.path or "/"
    else:
        url = urlsplit(base_url)
        relative = urlsplit(href)
        path = url.path.rstrip("/") + "/" + relative.path.lstrip("/")
        url = url._replace(query=relative.query)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"not an http(s) URL: {base_url!r} + {href!r}")
    port = url.port or (443 if url.scheme == "https" else 80)
    return Target(url.scheme, url.hostname, port, path + (f"?{url.query}" if url.query else ""))


@dataclass(frozen=True, slots=True)
class Head:
    """The response's status line and headers (names lower-cased)."""

    status: int
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


class _End:
    """The body ended as its framing says (terminal chunk, ``Content-Length`` reached, or the close)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Final = _End()

Item = Head | bytes | _End


class ResponseReader:
    """One GET as h11 sees it, sans I/O: :meth:`request` bytes out, :meth:`feed` bytes in, items out.

    Interim (1xx) answers are skipped. After :data:`END` nothing more is
    read (the connection is not reused: one stream, one socket).
    """

    __slots__ = ("_ended", "_h11")

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        self._ended = False

    def request(self, target: Target, headers: Mapping[str, str]) -> bytes:
        """The request's bytes: a GET with ``Host`` and ``headers`` (and nothing httpx would add)."""
        fields = [("host", target.authority), *headers.items()]
        try:
            return self._h11.send(h11.Request(method="GET", target=target.path, headers=fields)) + (
                self._h11.send(h11.EndOfMessage()) or b""
            )
        except h11.LocalProtocolError as exc:
            raise ValueError(f"cannot send this request: {exc}") from None

    def feed(self, data: bytes) -> list[Item]:
        """What ``data`` completes; ``b""`` is the peer's end of the stream (EOF).

        Raises :class:`StreamError` (``RemoteProtocolError``) when the answer
        is not HTTP/1.1 or the peer ended it before its body's end.
        """
        if self._ended:
            return []
        items: list[Item] = []
        try:
            self._h11.receive_data(data)
            while True:
                event = self._h11.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return items
                if isinstance(event, h11.Response):
                    headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers)
                    items.append(Head(event.status_code, headers))
                elif isinstance(event, h11.Data):
                    items.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    self._ended = True
                    items.append(END)
                    return items
        except h11.RemoteProtocolError:
            self._ended = True
            raise StreamError("RemoteProtocolError") from None


class _ReceiveBuffer(threading.local):
    """One receive buffer per thread (per event loop), lent to every stream's socket in turn.

    A plain ``Protocol`` gets each read as a fresh ``bytes`` that asyncio
    allocates at 256 KiB and shrinks to what arrived; a phone reads a few
    dozen bytes per heartbeat, and 10,000 phones doing so churn and fragment
    the heap. Reads land here instead and only what arrived is copied out,
    before the next read can reuse the buffer (the loop's thread runs both).
    """

    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_SIZE))


_RECEIVE = _ReceiveBuffer()


class HttpStream(asyncio.BufferedProtocol):
    """One GET's socket and its response: the head's ``status``, then the body chunk by chunk.

    It is the socket's protocol (fed by the transport, it runs the
    :class:`ResponseReader` and wakes the one coroutine waiting) and the
    caller's reader: ``async for chunk in stream`` yields body bytes as they
    come and stops at the body's end; a broken connection raises
    :class:`StreamError` once every byte before the break was read. The
    headers are not kept (a phone holds its stream for minutes and reads
    none). :meth:`close` releases the socket.
    """

    __slots__ = ("buffered", "error", "items", "paused", "reader", "status", "transport", "waiter")

    def __init__(self, reader: ResponseReader) -> None:
        self.reader = reader
        self.status = 0
        self.transport: asyncio.Transport | None = None
        self.items: list[Item] = []
        self.buffered = 0
        self.error: str | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False

    # -- the transport's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECEIVE.view

    def buffer_updated(self, nbytes: int) -> None:
        self._take(_RECEIVE.view[:nbytes].tobytes())
        if self.buffered > HIGH_WATER and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._take(b"")
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._fail("ReadError")
        else:
            self._take(b"")  # a close without a prior EOF (e.g. after our own close): same rules
        self._wake()

    def _take(self, data: bytes) -> None:
        try:
            items = self.reader.feed(data)
        except StreamError as exc:
            self._fail(exc.reason)
            self.close()
        else:
            for item in items:
                if isinstance(item, bytes):
                    self.buffered += len(item)
                    last = self.items[-1] if self.items else None
                    if isinstance(last, bytes):
                        self.items[-1] = last + item  # one piece per wake-up, however it was framed
                        continue
                self.items.append(item)
        self._wake()

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- the caller's side

    async def _next(self) -> Item:
        """The next item; :class:`StreamError` once every item before the failure was taken."""
        while not self.items:
            if self.error is not None:
                raise StreamError(self.error)
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        item = self.items.pop(0)
        if isinstance(item, bytes):
            self.buffered -= len(item)
            if self.paused and self.buffered <= HIGH_WATER // 2 and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
        return item

    async def head(self) -> int:
        """Wait for the response's head (nothing bounds the wait); its status."""
        item = await self._next()
        if not isinstance(item, Head):  # h11 gives the head first; anything else is a bug
            raise StreamError("RemoteProtocolError")
        self.status = item.status
        return self.status

    def __aiter__(self) -> HttpStream:
        return self

    async def __anext__(self) -> bytes:
        item = await self._next()
        if isinstance(item, bytes):
            return item
        raise StopAsyncIteration  # END (a second Head cannot come: h11 reads one response)

    async def read(self, limit: int) -> bytes:
        """The rest of the body, up to ``limit`` bytes (what is left beyond it is not read)."""
        body = b""
        async for chunk in self:
            body += chunk
            if len(body) >= limit:
                break
        return body[:limit]

    def close(self) -> None:
        """Close the socket (idempotent); what was read stays readable."""
        if self.transport is not None:
            self.transport.close()


async def open_stream(
    target: Target,
    headers: Mapping[str, str],
    *,
    connect_timeout: float | None,
    tls: ssl.SSLContext | None = None,
) -> HttpStream:
    """GET ``target`` on a connection of its own; the response once its head arrived.

    ``connect_timeout`` bounds the TCP connect (and the TLS handshake for
    ``https``); nothing bounds the reads here. The caller closes the stream
    (:meth:`HttpStream.close`, in a ``finally``); if this raises, the socket
    is already closed. A coroutine, not a context manager: the phone holds
    this for minutes, and each context-manager layer is a frame per phone.
    """
    reader = ResponseReader()
    request = reader.request(target, headers)
    stream = HttpStream(reader)
    loop = asyncio.get_running_loop()
    secure = target.scheme == "https"
    try:
        async with asyncio.timeout(connect_timeout):
            await loop.create_connection(
                lambda: stream,
                target.host,
                target.port,
                ssl=(tls or ssl.create_default_context()) if secure else None,
                server_hostname=target.host if secure else None,
            )
    except TimeoutError:
        raise StreamError("ConnectTimeout") from None
    except OSError:
        raise StreamError("ConnectError") from None
    try:
        assert stream.transport is not None
        stream.transport.write(request)
        await stream.head()
    except BaseException:
        stream.close()
        raise
    return stream
