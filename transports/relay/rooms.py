"""The room server: ``python -m progressbench.transports.relay.rooms`` (role ``rooms``), PartyKit-style.

Built on the ``websockets`` library's asyncio server. One room per job at
``/parties/main/<job_id>``:

* **join** — a WebSocket to the room's path with ``?token=<job token>`` (the
  per-job HS256 JWT the API returned; partysocket passes auth as query
  parameters). ``401`` for a missing/bad/expired token, ``403`` when the
  token's ``job_id`` is not the room (or its ``sub`` is not the owner the room
  learnt from a publish), ``429`` when the room is at its cap (PartyKit: 100
  connections without hibernation), ``404`` for any other path;
* **publish** — ``POST /parties/main/<job_id>`` with a service token and one
  event as JSON: the room broadcasts it to every socket in it and answers
  ``200 {"delivered": n}``. No history is kept (PartyKit's default): a
  socket that was not in the room when a message was published never sees it.

The ``websockets`` server only speaks GET upgrades, so
:class:`_RoomConnection` recognises a ``POST`` by its first bytes and answers
it as plain HTTP/1.1 (one request per connection) before the WebSocket
machinery ever parses it.

Admin socket: ``GET /metrics`` and ``GET /healthz`` for the supervisor,
answered from ``process_request``. Settings (:class:`RoomsConfig`) can be
overridden with JSON in ``PROGRESSBENCH_RELAY_ROOMS`` (read once, in
:func:`main`).

Shutdown story: SIGTERM closes both servers; open sockets get close code 1001
(going away) and their clients reconnect, to a fresh instance, to an empty
room (nothing to replay: the client fetches its snapshot from the API).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from progressbench.core import tokens
from progressbench.core.config import ServiceConfig, load_service_config
from progressbench.core.errors import ProgressbenchError
from progressbench.kit.context import SERVICE_SUBJECT
from progressbench.kit.meters import Meters
from progressbench.kit.runtime import die_with_parent, inherited_sockets, mark_ready, setup_logging

log = logging.getLogger(__name__)

ROOMS_CONFIG_ENV = "PROGRESSBENCH_RELAY_ROOMS"
ROOM_PATH = re.compile(r"^/parties/main/([0-9a-fA-F-]{36})/?$")
MAX_PUBLISH_BYTES = 64 * 1024


class RoomsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: PartyKit: up to 100 connections per room without hibernation (32,000 with it).
    max_connections_per_room: int = Field(default=100, ge=1, le=32_000)
    #: Server-side WebSocket pings (unscaled seconds); None like PartyKit, which sends none.
    ping_interval_s: float | None = Field(default=None, gt=0)


def room_of(path: str) -> uuid.UUID | None:
    match = ROOM_PATH.match(urlsplit(path).path)
    return uuid.UUID(match.group(1)) if match else None


def join_verdict(
    secret: str, path: str, room_owner: str | None, occupancy: int, cap: int
) -> tuple[int, str] | uuid.UUID:
    """Pure admission check: the room to join, or (status, reason) to refuse with."""
    room = room_of(path)
    if room is None:
        return 404, "no such party or room"
    raw = parse_qs(urlsplit(path).query).get("token", [""])[0]
    if not raw:
        return 401, "missing room token"
    try:
        grant = tokens.decode(secret, raw)
    except tokens.TokenRejected as exc:
        return 401, exc.reason
    if grant.job_id != room or (room_owner is not None and grant.owner != room_owner):
        return 403, "token is not for this room"
    if occupancy >= cap:
        return 429, "room is full"
    return room


class RoomMeters:
    def __init__(self, meters: Meters) -> None:
        r, self.service = meters.registry, meters.service
        self.base = meters
        self.open = Gauge("pb_relay_connections", "Open room sockets", ["service"], registry=r)
        self.peak = Gauge(
            "pb_relay_peak_connections", "Most room sockets open at once", ["service"], registry=r
        )
        self.opened = Counter("pb_relay_connections_opened", "Room sockets accepted", ["service"], registry=r)
        self.refused = Counter("pb_relay_refused", "Joins refused", ["service", "reason"], registry=r)
        self.publishes = Counter("pb_relay_publishes", "HTTP publishes into rooms", ["service"], registry=r)
        self.received = Counter(
            "pb_relay_messages_received", "Messages received from sockets", ["service"], registry=r
        )
        self.rooms = Gauge("pb_relay_rooms", "Rooms with at least one socket", ["service"], registry=r)


@dataclass
class RoomHub:
    """The rooms of one instance: sockets by job id, owners learnt from publishes."""

    secret: str
    config: RoomsConfig
    meters: RoomMeters
    rooms: dict[uuid.UUID, set[ServerConnection]] = field(default_factory=dict)
    owners: dict[uuid.UUID, str] = field(default_factory=dict)
    total: int = 0
    peak: int = 0

    def admit(self, connection: ServerConnection, request: Request) -> Response | None:
        room_id = room_of(request.path)
        occupancy = len(self.rooms.get(room_id, ())) if room_id is not None else 0
        verdict = join_verdict(
            self.secret,
            request.path,
            self.owners.get(room_id) if room_id else None,
            occupancy,
            self.config.max_connections_per_room,
        )
        if isinstance(verdict, tuple):
            status, reason = verdict
            self.meters.refused.labels(self.meters.service, str(status)).inc()
            self.meters.base.requests.labels(self.meters.service, "websocket", str(status)).inc()
            return connection.respond(status, reason + "\n")
        # Reserve the seat now so concurrent joins cannot overshoot the cap; give it back
        # when the socket goes, whether or not the handshake ever completed.
        self._add(verdict, connection)
        room = verdict
        connection.connection_lost_waiter.add_done_callback(lambda _: self.remove(room, connection))
        return None

    def _add(self, room: uuid.UUID, connection: ServerConnection) -> None:
        self.rooms.setdefault(room, set()).add(connection)
        self.total += 1
        self.peak = max(self.peak, self.total)
        svc = self.meters.service
        self.meters.open.labels(svc).set(self.total)
        self.meters.peak.labels(svc).set(self.peak)
        self.meters.rooms.labels(svc).set(len(self.rooms))

    def remove(self, room: uuid.UUID, connection: ServerConnection) -> None:
        members = self.rooms.get(room)
        if members is None or connection not in members:
            return
        members.discard(connection)
        self.total -= 1
        if not members:
            del self.rooms[room]
            self.owners.pop(room, None)
        svc = self.meters.service
        self.meters.open.labels(svc).set(self.total)
        self.meters.rooms.labels(svc).set(len(self.rooms))

    async def handler(self, connection: ServerConnection) -> None:
        """One member's life in its room: it only listens; what it sends is counted and dropped."""
        room = room_of(connection.request.path if connection.request else "")
        assert room is not None  # admit() accepted only room paths
        svc = self.meters.service
        self.meters.opened.labels(svc).inc()
        self.meters.base.requests.labels(svc, "websocket", "101").inc()
        key = id(connection)
        self.meters.base.clock.begin(key, time.monotonic())
        try:
            async for _ in connection:
                self.meters.received.labels(svc).inc()
        except ConnectionClosed:
            pass
        finally:
            self.meters.base.clock.end(key, time.monotonic())
            self.remove(room, connection)

    def broadcast(self, room: uuid.UUID, event: dict[str, Any]) -> int:
        members = list(self.rooms.get(room, ()))
        if not members:
            return 0
        text = json.dumps({"type": "event", **event}, separators=(",", ":"))
        # websockets' broadcast writes one frame to every open member without awaiting:
        # a slow member's buffer grows, it never holds the others back (no backpressure).
        open_members = [m for m in members if m.protocol.state is State.OPEN]
        broadcast(open_members, text)
        delivered = len(open_members)
        self.meters.base.messages.labels(self.meters.service, "relay").inc(delivered)
        self.meters.base.bytes_sent.labels(self.meters.service).inc(delivered * len(text))
        return delivered

    def publish(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """An HTTP publish into a room: (status, JSON answer)."""
        svc = self.meters.service
        room = room_of(path)
        if room is None:
            return 404, {"detail": "no such party or room"}
        try:
            grant = tokens.decode(self.secret, tokens.bearer(headers.get("authorization")))
        except tokens.TokenRejected as exc:
            return 401, {"detail": exc.reason}
        if grant.owner != SERVICE_SUBJECT:
            return 403, {"detail": "not a service token"}
        try:
            event = json.loads(body)
            seq = int(event["seq"])
        except (ValueError, KeyError, TypeError):
            return 400, {"detail": "body must be a JSON event with a seq"}
        if not isinstance(event, dict):
            return 400, {"detail": "body must be a JSON object"}
        owner = event.pop("owner", None)
        if isinstance(owner, str) and room in self.rooms:
            self.owners.setdefault(room, owner)
        self.meters.publishes.labels(svc).inc()
        self.meters.base.bytes_received.labels(svc).inc(len(body))
        event["job_id"], event["seq"] = str(room), seq
        return 200, {"delivered": self.broadcast(room, event)}


Publisher = Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]


class _RoomConnection(ServerConnection):
    """A server connection that also answers a plain ``POST`` (the room's HTTP publish).

    Use :func:`connection_class` to bind it to a hub's publisher.
    """

    publisher: Publisher | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http: bytearray | None = None
        self._first = True
        self._http_done: asyncio.Future[None] = self.loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if data.startswith(b"POST "):
                self._http = bytearray()
        if self._http is None:
            super().data_received(data)
            return
        self._http += data
        self._maybe_answer()

    def eof_received(self) -> None:
        if self._http is None:
            super().eof_received()

    def _maybe_answer(self) -> None:
        assert self._http is not None
        head_end = self._http.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self._http) > 16_384:
                self._answer(431, {"detail": "request head too large"})
            return
        lines = bytes(self._http[:head_end]).decode("latin-1").split("\r\n")
        _method, path, *_ = [*lines[0].split(" "), "", ""]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._answer(400, {"detail": "bad Content-Length"})
            return
        if length > MAX_PUBLISH_BYTES:
            self._answer(413, {"detail": "event too large"})
            return
        body = bytes(self._http[head_end + 4 : head_end + 4 + length])
        if len(body) < length:
            return
        publisher = self.publisher
        if publisher is None:
            self._answer(503, {"detail": "not ready"})
            return
        try:
            status, answer = publisher(path, headers, body)
        except Exception:
            log.exception("publish to %s failed", path)
            status, answer = 500, {"detail": "publish failed"}
        self._answer(status, answer)

    def _answer(self, status: int, answer: dict[str, Any]) -> None:
        if self._http_done.done():
            return
        payload = json.dumps(answer).encode()
        reason = http.HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + payload)
        self.transport.close()
        self._http_done.set_result(None)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.wait(
            [self.request_rcvd, self.connection_lost_waiter, self._http_done],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._http is not None:
            # A plain HTTP exchange: wait until the answer is flushed and the socket closed,
            # so the server's abort() of a non-WebSocket connection cannot cut it short.
            await self.connection_lost_waiter
            return
        await super().handshake(*args, **kwargs)


def connection_class(publisher: Publisher) -> type[_RoomConnection]:
    """A :class:`_RoomConnection` subclass whose POSTs go to ``publisher`` (no module state)."""
    return type("RoomConnection", (_RoomConnection,), {"publisher": staticmethod(publisher)})


def _admin_responder(
    meters: Meters, config: ServiceConfig
) -> Callable[[ServerConnection, Request], Response]:
    def respond(connection: ServerConnection, request: Request) -> Response:
        path = urlsplit(request.path).path
        if path == "/metrics":
            return Response(
                200,
                "OK",
                Headers({"Content-Type": "text/plain; version=0.0.4"}),
                meters.exposition(),
            )
        if path == "/healthz":
            body = json.dumps({"status": "ok", "role": config.role, "instance": config.instance})
            return Response(200, "OK", Headers({"Content-Type": "application/json"}), body.encode())
        return connection.respond(404, "not found\n")

    return respond


async def _refuse(connection: ServerConnection) -> None:  # the admin socket serves no WebSockets
    await connection.close(1008)


async def serve_rooms(config: ServiceConfig, rooms_config: RoomsConfig) -> None:
    listen, admin = inherited_sockets()
    meters = Meters(config.role, config.concurrency)
    hub = RoomHub(config.token_secret, rooms_config, RoomMeters(meters))
    ping = config.timing.scaled(rooms_config.ping_interval_s) if rooms_config.ping_interval_s else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            serve(
                hub.handler,
                sock=listen,
                process_request=hub.admit,
                create_connection=connection_class(hub.publish),
                ping_interval=ping,
                ping_timeout=ping,
                max_size=MAX_PUBLISH_BYTES,
                close_timeout=1.0,
            )
        )
        if admin is not None:
            await stack.enter_async_context(
                serve(_refuse, sock=admin, process_request=_admin_responder(meters, config))
            )
        mark_ready()
        log.info("rooms serving (cap %d per room)", rooms_config.max_connections_per_room)
        await stop.wait()
        log.info("rooms shutting down: %d sockets open", hub.total)


def main() -> int:
    try:
        config = load_service_config()
        rooms_config = RoomsConfig.model_validate_json(os.environ.get(ROOMS_CONFIG_ENV) or "{}")
    except (ProgressbenchError, ValidationError) as exc:
        print(f"progressbench rooms: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    die_with_parent()
    try:
        asyncio.run(serve_rooms(config, rooms_config))
    except ProgressbenchError as exc:
        print(f"progressbench rooms: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
