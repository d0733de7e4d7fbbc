"""The rooms of one instance: membership, seats under a cap, broadcast of published events.

State lives only here and only in memory, as in a PartyKit room without
storage: an instance that dies takes its rooms with it, and the phones
rebuild the picture from the API's snapshot (the database is the truth; a
room is a doorbell). The admission and publish decisions themselves are
:mod:`~progressbench.transports.relay.rooms.policy`'s.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from progressbench.transports.relay.rooms.config import RoomsConfig
from progressbench.transports.relay.rooms.frames import Encoding, SharedFrames, encoding_of
from progressbench.transports.relay.rooms.http11 import PublishRequest
from progressbench.transports.relay.rooms.meters import RoomMeters
from progressbench.transports.relay.rooms.policy import join_verdict, publish_verdict, room_of
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

log = logging.getLogger(__name__)

#: Marks a socket whose encoding is not learnt yet (None is an answer: "its own frames").
_UNKNOWN: Any = object()


@dataclass
class RoomHub:
    """The rooms of one instance: sockets by job id, owners learnt from publishes."""

    secret: str
    config: RoomsConfig
    meters: RoomMeters
    #: Verifies publishers' service tokens (``ServiceConfig.service_secret``); "" refuses all.
    service_secret: str = ""
    rooms: dict[uuid.UUID, set[ServerConnection]] = field(default_factory=dict)
    owners: dict[uuid.UUID, str] = field(default_factory=dict)
    #: Each open socket's outgoing encoding (None: its frames depend on its history), learnt at
    #: its first broadcast (extensions are settled by the handshake) and forgotten with it. Equal
    #: encodings are one object (:attr:`_interned`), so a broadcast compares them by identity.
    encodings: dict[ServerConnection, Encoding | None] = field(default_factory=dict)
    _interned: dict[Encoding, Encoding] = field(default_factory=dict)
    total: int = 0
    peak: int = 0

    def admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """The server's ``process_request``: refuse the join, or reserve its seat and let it in."""
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
        if room not in self.rooms:
            self.meters.active.opened(room, time.monotonic())
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
        self.encodings.pop(connection, None)
        self.total -= 1
        if not members:
            del self.rooms[room]
            self.owners.pop(room, None)
            self.meters.active.closed(room, time.monotonic())
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
        self.meters.base.clock.mark_held(key)  # a room socket stays open while the job runs
        try:
            async for _ in connection:
                self.meters.received.labels(svc).inc()
        except ConnectionClosed:
            pass
        finally:
            self.meters.base.clock.end(key, time.monotonic())
            self.remove(room, connection)

    def broadcast(self, room: uuid.UUID, event: dict[str, Any]) -> int:
        """Send ``event`` to every open member now, without awaiting; the count of sockets sent to.

        Like websockets' ``broadcast()`` (one write per socket, no
        backpressure: a slow member's buffer grows, it never holds the others
        back), but the frame is built once per encoding and the same bytes are
        written to every socket that shares it (:mod:`~progressbench.transports.relay.rooms.frames`);
        only a socket whose compressor keeps context goes through its own protocol.
        """
        members = self.rooms.get(room)
        if not members:
            return 0
        text = json.dumps({"type": "event", **event}, separators=(",", ":"))
        frames = SharedFrames(text.encode())
        own: list[ServerConnection] = []
        delivered = 0
        known = self.encodings
        # The last encoding's bytes: a room's sockets almost always share one encoding, and
        # interned encodings compare by identity, so most sockets cost no lookup at all.
        last: Encoding | None = None
        data = b""
        for member in members:
            protocol = member.protocol
            if protocol.state is not State.OPEN or member.fragmented_send_waiter is not None:
                continue
            encoding = known.get(member, _UNKNOWN)
            if encoding is _UNKNOWN:
                encoding = known[member] = self._intern(encoding_of(protocol.extensions))
            if encoding is None or protocol.writes:
                own.append(member)
                continue
            if encoding is not last:
                last, data = encoding, frames.frame(encoding, protocol.extensions)
            try:
                member.transport.write(data)
            except Exception as exc:  # a socket going away: like broadcast(), skip it
                log.debug("broadcast to a member failed: %s", exc)
                continue
            delivered += 1
        if own:
            broadcast(own, text)
            delivered += len(own)
        self.meters.base.messages.labels(self.meters.service, "relay").inc(delivered)
        self.meters.base.bytes_sent.labels(self.meters.service).inc(delivered * len(text))
        return delivered

    def _intern(self, encoding: Encoding | None) -> Encoding | None:
        if encoding is None:
            return None
        return self._interned.setdefault(encoding, encoding)

    def publish(self, request: PublishRequest) -> tuple[int, dict[str, Any]]:
        """An HTTP publish into a room: (status, JSON answer)."""
        svc = self.meters.service
        verdict = publish_verdict(self.service_secret, request.path, request.headers.get("authorization"))
        if isinstance(verdict, tuple):
            status, reason = verdict
            return status, {"detail": reason}
        room = verdict
        body = request.body
        try:
            event = json.loads(body)
            raw_seq = event["seq"]
            if isinstance(raw_seq, str):
                raw_seq = int(raw_seq)
        except (ValueError, KeyError, TypeError, RecursionError):
            return 400, {"detail": "body must be a JSON event with a seq"}
        if not isinstance(event, dict):
            return 400, {"detail": "body must be a JSON object"}
        seq = event_seq(raw_seq)
        if seq is None:
            return 422, {"detail": "seq must be a whole number from 0 to 2^63-1"}
        owner = event.pop("owner", None)
        if isinstance(owner, str) and room in self.rooms:
            self.owners.setdefault(room, owner)
        self.meters.publishes.labels(svc).inc()
        self.meters.base.bytes_received.labels(svc).inc(len(body))
        event["job_id"], event["seq"] = str(room), seq
        return 200, {"delivered": self.broadcast(room, event)}


def event_seq(raw: object) -> int | None:
    """A publish's ``seq`` as an int, or None when it is not a finite whole number in range.

    ``1e400`` parses to infinity and ``int()`` of it raised OverflowError (a 500); a
    bool is not a number here; a whole float such as ``3.0`` is accepted as before.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        if not math.isfinite(raw) or not raw.is_integer():
            return None
        raw = int(raw)
    if not isinstance(raw, int) or not 0 <= raw < 2**63:
        return None
    return raw
