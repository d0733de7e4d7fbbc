"""A service's front: the platform's load balancer, round-robin over instances, one slot per request.

Cloud Run admits at most ``concurrency`` requests per instance; an open SSE
stream is a request for its whole life, so it holds its slot until it ends.
The front is where that limit lives once a service has several instances:
it owns the service's socket (the service URL every client, proxy and peer
already uses), parses each HTTP/1.1 request (h11), gives it to the next
instance in turn that has a free slot, relays the response as it comes
(streams included) and frees the slot when the response ends or either
side goes away.

A slot's weight follows the run's time scale, as the meters' durations
do: a stream's (``text/event-stream``) lasts as long as the job, so it
takes a whole slot; any other request lasts its real processing time while
the scale makes requests ``1/scale`` times denser (a phone polls every
0.1 s at scale 0.1), so it takes ``scale`` of a slot. A request that asks for a stream
(``Accept: text/event-stream``) weighs a whole slot from the start; any
other becomes one when its response turns out to be a stream. Without that a
polling run at scale 0.1 would need ten times the instances it needs in
real time. The instances' own limit is lifted when fronted: the front
holds the limit.

When every serving instance is full, the request waits — Cloud Run queues
it while instances start — and the wait is what the autoscaler
(:mod:`~progressbench.app.autoscaler`) sees as demand. A request still
without a slot after the queue time is answered ``429`` with
``Retry-After``, as an instance at its limit answers today.

Shutdown story: :meth:`Front.serve` runs until cancelled; cancelling it
closes the listener and every client and upstream connection (streams end
abruptly, as when a platform drops them). A connection to an instance that
dies mid-response is aborted toward the client (it sees a reset, as it did
when it talked to the instance directly); a connection refused before the
request was sent goes to another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import h11

log = logging.getLogger(__name__)

READ_CHUNK = 65536
#: Real seconds a client connection may sit idle between requests (the instances' uvicorn default).
KEEP_ALIVE_S = 5.0
#: Real seconds an idle upstream connection is kept for reuse (under the instances' keep-alive).
UPSTREAM_IDLE_S = 2.0
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"upgrade"})


STREAM_TYPE = b"text/event-stream"


@dataclass(frozen=True, slots=True)
class Backend:
    """A serving instance as the front sees it: a name and where it listens."""

    name: str
    host: str
    port: int


@dataclass
class FrontSettings:
    concurrency: int
    #: how long a request may wait for a slot before its 429 (already scaled)
    queue_s: float
    #: the ``Retry-After`` of that 429
    retry_after: str
    #: a client must finish a request head within this long (already scaled)
    header_timeout_s: float
    #: a non-stream request's share of a slot (the run's time scale, at most 1)
    short_weight: float = 1.0


@dataclass
class _Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h11.Connection
    idle_since: float = 0.0


@dataclass
class FrontStats:
    """Counters since the front started (the supervisor reports their deltas per cell)."""

    requests: int = 0
    rejected: int = 0
    queued: int = 0
    upstream_errors: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    #: slots taken per instance: streams count 1, other requests ``short_weight``
    load: dict[str, float] = field(default_factory=dict)


@dataclass
class _Slot:
    backend: Backend
    weight: float


class _ClientGone(Exception):
    pass


class Front:
    """Round-robin HTTP/1.1 relay with a per-instance concurrency limit (see module docstring)."""

    def __init__(self, role: str, settings: FrontSettings, backends: Callable[[], Sequence[Backend]]) -> None:
        self.role = role
        self.settings = settings
        self._backends = backends
        self.stats = FrontStats()
        #: requests waiting for a slot right now (the autoscaler's demand beyond the serving instances)
        self.waiting = 0
        self._turn = 0
        self._slots = asyncio.Condition()
        self._pool: dict[str, list[_Upstream]] = {}
        self._connections: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ slots

    def in_flight(self, name: str) -> int:
        return self.stats.in_flight.get(name, 0)

    def load(self, name: str) -> float:
        """Slots taken on instance ``name`` (see the module docstring for the weights)."""
        return self.stats.load.get(name, 0.0)

    def _pick(self, exclude: set[str], weight: float) -> Backend | None:
        serving = [b for b in self._backends() if b.name not in exclude]
        for k in range(len(serving)):
            backend = serving[(self._turn + k) % len(serving)]
            if self.load(backend.name) + weight <= self.settings.concurrency + 1e-9:
                self._turn = (self._turn + k + 1) % len(serving)
                return backend
        return None

    async def _acquire(self, exclude: set[str], weight: float | None = None) -> _Slot | None:
        """A slot (of ``weight``, default a short request's) on the next instance with room for it;
        waits up to the queue time, None after it."""
        weight = self.settings.short_weight if weight is None else weight
        backend = self._pick(exclude, weight)
        if backend is None:
            self.stats.queued += 1
            self.waiting += 1
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.queue_s
            try:
                async with self._slots:
                    while (backend := self._pick(exclude, weight)) is None:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            return None
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._slots.wait(), remaining)
            finally:
                self.waiting -= 1
        self.stats.in_flight[backend.name] = self.in_flight(backend.name) + 1
        self.stats.load[backend.name] = self.load(backend.name) + weight
        return _Slot(backend, weight)

    def _hold(self, slot: _Slot) -> None:
        """The response is a stream: it takes a whole slot from now on."""
        extra = 1.0 - slot.weight
        if extra > 0:
            slot.weight = 1.0
            self.stats.load[slot.backend.name] = self.load(slot.backend.name) + extra

    async def _release(self, slot: _Slot) -> None:
        name = slot.backend.name
        self.stats.in_flight[name] = max(self.in_flight(name) - 1, 0)
        self.stats.load[name] = max(self.load(name) - slot.weight, 0.0)
        async with self._slots:
            self._slots.notify(1)

    async def capacity_changed(self) -> None:
        """An instance became ready (or left): every waiting request looks again."""
        async with self._slots:
            self._slots.notify_all()

    # ------------------------------------------------------------------ serving

    async def serve(self, sock: socket.socket) -> None:
        """Accept on ``sock`` (the service socket) until cancelled."""
        server = await asyncio.start_server(self._connection, sock=sock, limit=READ_CHUNK)
        try:
            await server.serve_forever()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            for idle in self._pool.values():
                for up in idle:
                    up.writer.transport.abort()
            self._pool.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        client = h11.Connection(h11.SERVER)
        try:
            first = True
            while True:
                request = await self._read_head(client, reader, first)
                first = False
                if request is None:
                    break
                body = await self._read_body(client, reader)
                self.stats.requests += 1
                await self._handle(request, body, client, reader, writer)
                if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
                    break
                client.start_next_cycle()
        except (_ClientGone, h11.ProtocolError, ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:  # the front is closing: the connection ends here, quietly
            pass
        finally:
            self._connections.discard(task)
            if client.our_state is h11.SEND_BODY:  # a response cut short: the client sees a reset
                writer.transport.abort()
            else:
                writer.close()

    async def _read_head(
        self, client: h11.Connection, reader: asyncio.StreamReader, first: bool
    ) -> h11.Request | None:
        """The next request head, or None when the client is done (closed, idle, or too slow)."""
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + self.settings.header_timeout_s if first else None
        while True:
            event = client.next_event()
            if isinstance(event, h11.Request):
                return event
            if isinstance(event, h11.ConnectionClosed):
                return None
            if event is not h11.NEED_DATA:
                raise h11.LocalProtocolError(f"unexpected {event!r}")
            wait = KEEP_ALIVE_S if deadline is None else deadline - loop.time()
            if wait <= 0:
                return None
            try:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), wait)
            except TimeoutError:
                return None
            if deadline is None:  # the first bytes of a later request start its head deadline
                deadline = loop.time() + self.settings.header_timeout_s
            client.receive_data(data)

    async def _read_body(self, client: h11.Connection, reader: asyncio.StreamReader) -> list[bytes]:
        parts: list[bytes] = []
        while True:
            event = client.next_event()
            if isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return parts
            elif event is h11.NEED_DATA:
                data = await reader.read(READ_CHUNK)
                client.receive_data(data)
            else:
                raise _ClientGone()

    async def _handle(
        self,
        request: h11.Request,
        body: list[bytes],
        client: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        tried: set[str] = set()
        asks_stream = any(k.lower() == b"accept" and STREAM_TYPE in v for k, v in request.headers)
        while True:
            slot = await self._acquire(tried, 1.0 if asks_stream else None)
            if slot is None:
                if tried:
                    await self._answer(client, writer, 503, b"no instance answered", None)
                else:
                    self.stats.rejected += 1
                    await self._answer(
                        client, writer, 429, b"no instance available", self.settings.retry_after
                    )
                return
            try:
                sent = await self._relay(slot, request, body, client, reader, writer)
            finally:
                await self._release(slot)
            if sent:
                return
            self.stats.upstream_errors += 1
            tried.add(slot.backend.name)

    async def _answer(
        self,
        client: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        detail: bytes,
        retry: str | None,
    ) -> None:
        body = b'{"detail":"' + detail + b'"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if retry is not None:
            headers.append((b"retry-after", retry.encode()))
        writer.write(client.send(h11.Response(status_code=status, headers=headers)) or b"")
        writer.write(client.send(h11.Data(data=body)) or b"")
        writer.write(client.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    # ------------------------------------------------------------------ upstream

    async def _upstream(self, backend: Backend) -> _Upstream:
        loop = asyncio.get_running_loop()
        idle = self._pool.get(backend.name, [])
        while idle:
            up = idle.pop()
            if loop.time() - up.idle_since < UPSTREAM_IDLE_S and not up.reader.at_eof():
                return up
            up.writer.transport.abort()
        reader, writer = await asyncio.open_connection(backend.host, backend.port, limit=READ_CHUNK)
        return _Upstream(reader, writer, h11.Connection(h11.CLIENT))

    def _park(self, backend: Backend, up: _Upstream) -> None:
        if up.conn.our_state is h11.DONE and up.conn.their_state is h11.DONE:
            up.conn.start_next_cycle()
            up.idle_since = asyncio.get_running_loop().time()
            self._pool.setdefault(backend.name, []).append(up)
        else:
            up.writer.transport.abort()

    async def _relay(
        self,
        slot: _Slot,
        request: h11.Request,
        body: list[bytes],
        client: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Send the request to ``backend`` and the response back; False if nothing came back at all.

        A refused or dead connection before the response started is False
        (the caller tries another instance); once the response started, a
        failure aborts the client's connection.
        """
        backend = slot.backend
        try:
            up = await self._upstream(backend)
        except OSError:
            return False
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        try:
            out = up.conn.send(h11.Request(method=request.method, target=request.target, headers=headers))
            parts = [out or b""]
            parts += [up.conn.send(h11.Data(data=b)) or b"" for b in body]
            parts.append(up.conn.send(h11.EndOfMessage()) or b"")
            up.writer.write(b"".join(parts))
            await up.writer.drain()
            response = await self._response_head(up)
        except (OSError, h11.ProtocolError, _ClientGone):
            up.writer.transport.abort()
            return False
        if any(k.lower() == b"content-type" and v.startswith(STREAM_TYPE) for k, v in response.headers):
            self._hold(slot)
        watcher = asyncio.create_task(self._watch_client(client, reader))
        relay = asyncio.create_task(self._relay_body(up, response, client, writer))
        try:
            done, _ = await asyncio.wait({watcher, relay}, return_when=asyncio.FIRST_COMPLETED)
            if relay not in done:  # the client went away: drop the upstream (the stream ends there)
                relay.cancel()
                up.writer.transport.abort()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await relay
                raise _ClientGone()
            relay.result()  # a failure upstream or toward the client propagates
        except (OSError, h11.ProtocolError):
            up.writer.transport.abort()
            raise _ClientGone() from None
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        self._park(backend, up)
        return True

    async def _response_head(self, up: _Upstream) -> h11.Response:
        while True:
            event = up.conn.next_event()
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                continue
            if event is h11.NEED_DATA:
                data = await up.reader.read(READ_CHUNK)
                up.conn.receive_data(data)
                if not data:
                    raise _ClientGone()
                continue
            raise _ClientGone()

    async def _relay_body(
        self, up: _Upstream, response: h11.Response, client: h11.Connection, writer: asyncio.StreamWriter
    ) -> None:
        """The response to the client, one write per upstream read: the head, the body parts and
        the end that h11 already holds go out together (a poll's answer in one send instead of
        two or three; each is a system call of the process every front of the stack runs in)."""
        headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
        pending = [
            client.send(
                h11.Response(status_code=response.status_code, headers=headers, reason=response.reason)
            )
            or b""
        ]
        while True:
            event = up.conn.next_event()
            if isinstance(event, h11.Data):
                pending.append(client.send(h11.Data(data=event.data)) or b"")
            elif isinstance(event, h11.EndOfMessage):
                pending.append(client.send(h11.EndOfMessage()) or b"")
                writer.write(b"".join(pending))
                await writer.drain()
                return
            elif event is h11.NEED_DATA:
                # What is held goes out before waiting: a stream's head and events are never kept back.
                if pending:
                    writer.write(b"".join(pending))
                    pending.clear()
                    await writer.drain()
                # EOF too: h11 ends a close-delimited body, or raises on a cut one
                up.conn.receive_data(await up.reader.read(READ_CHUNK))
            else:
                raise ConnectionResetError("upstream closed")

    async def _watch_client(self, client: h11.Connection, reader: asyncio.StreamReader) -> None:
        """Returns when the client closes its connection; bytes it sends meanwhile wait in h11."""
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                return
            client.receive_data(data)
