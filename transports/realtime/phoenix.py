"""One Realtime websocket: Phoenix channels, as the official clients expect them.

Frames go through the socket's serializer (``serializer.py``), negotiated at
the handshake from ``vsn``: 1.0.0 JSON objects (the Python client) or 2.0.0
arrays and binary broadcasts (supabase-js); the channel logic is the same.

Per connection: a reader (this coroutine) and a writer task draining a
bounded outbound queue, so a slow phone never blocks the change feed; a
phone that lets 1,000 frames pile up is disconnected (1008).

Behaviour reproduced from Supabase Realtime (see
``shared/reference/realtime-protocol.md``): the socket's ``apikey``
must be a valid project JWT (else HTTP 401 before the upgrade); ``phx_join``
takes ``access_token`` > ``user_token`` > the apikey, verifies it (errors are
replied after the server's error back-off), echoes every binding with its id,
then — once the subscription is registered with the feed — pushes "Subscribed
to PostgreSQL". A duplicate join of a topic replies ok and then closes the
*old* join with ``phx_close`` (Phoenix; the Python client mis-handles it).
``access_token`` re-verifies and re-registers, never replies. At ``exp`` the
channel gets a system error and ``phx_close``; the socket stays open.
``phx_leave`` replies ok then ``phx_close``. A socket silent for 60 s is
closed, like Phoenix's transport timeout.

Hostile input gets an answer, never a dropped socket (issue #13, probe 9): a
frame its serializer cannot read (vsn 1.0.0 decodes binary frames as UTF-8
JSON, like text) gets an error ``phx_reply`` on the ``phoenix`` topic naming
the problem; a join past
:data:`MAX_CHANNELS` channels on one socket gets Realtime's
``ChannelRateLimitReached: Too many channels`` (Supabase's "Channels per
connection" limit is 100 on every plan: supabase.com/docs/guides/realtime/limits
and .../troubleshooting/realtime-too-many-channels-error, read 2026-11-30).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from progressbench.transports.realtime import wire
from progressbench.transports.realtime.auth import AuthError, Claims, verify
from progressbench.transports.realtime.feed import Binding, ChangeFeed, Subscriber
from progressbench.transports.realtime.filters import FilterError, parse_filter
from progressbench.transports.realtime.serializer import V1, Serializer
from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger(__name__)

OUTBOUND_LIMIT = 1000
#: Supabase Realtime's channels-per-connection limit (the same on every plan).
MAX_CHANNELS = 100
TOO_MANY_CHANNELS = "ChannelRateLimitReached: Too many channels"
IDLE_TIMEOUT_S = 60.0
PUBLISHED_TABLES = frozenset({("public", "job_events")})


@dataclass
class SocketSettings:
    secret: str
    #: Realtime waits this long before answering a join with an error (CHANNEL_ERROR_BACKOFF_MS).
    error_delay_s: float = 5.0
    idle_timeout_s: float = IDLE_TIMEOUT_S


@dataclass(eq=False)
class Channel:
    topic: str
    join_ref: str | None
    conn: RealtimeSocket
    subscriber: Subscriber | None = None
    expiry: asyncio.Task[None] | None = None

    def push(self, frame: str | bytes) -> None:
        self.conn.push(frame)

    def push_change(self, ids: list[int], data_json: str) -> None:
        self.conn.push(self.conn.serializer.change(self.topic, ids, data_json))


@dataclass(eq=False)
class RealtimeSocket:
    ws: WebSocket
    feed: ChangeFeed
    settings: SocketSettings
    apikey: str
    serializer: Serializer = field(default_factory=V1)
    channels: dict[str, Channel] = field(default_factory=dict)
    _out: asyncio.Queue[str | bytes | None] = field(default_factory=lambda: asyncio.Queue(OUTBOUND_LIMIT))
    _later: set[asyncio.Task[None]] = field(default_factory=set)
    overflowed: bool = False

    def push(self, frame: str | bytes) -> None:
        try:
            self._out.put_nowait(frame)
        except asyncio.QueueFull:
            if not self.overflowed:
                log.warning("outbound queue full; dropping the socket")
            self.overflowed = True

    async def _writer(self) -> None:
        while True:
            frame = await self._out.get()
            if frame is None or self.overflowed:
                return
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_text(frame)

    async def serve(self) -> None:
        writer = asyncio.create_task(self._writer(), name="realtime-writer")
        try:
            while not writer.done() and not self.overflowed:
                try:
                    message = await asyncio.wait_for(self.ws.receive(), self.settings.idle_timeout_s)
                except TimeoutError:
                    break
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                data = text if text is not None else message.get("bytes") or b""
                try:
                    frame = self.serializer.decode(data, binary=text is None)
                except wire.FrameError as exc:
                    reason = {"reason": f"malformed frame (vsn {self.serializer.vsn}): {exc}"}
                    self.push(self.serializer.reply(wire.PHOENIX_TOPIC, None, None, reason, "error"))
                    continue
                self.handle(frame)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for channel in list(self.channels.values()):
                self._drop(channel)
            for task in self._later:
                task.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if self.overflowed:
                with contextlib.suppress(Exception):
                    await self.ws.close(1008)

    # ----------------------------------------------------------------- frames

    def handle(self, frame: wire.ClientFrame) -> None:
        topic, event, out = frame.topic, frame.event, self.serializer
        if topic == wire.PHOENIX_TOPIC and event == "heartbeat":
            self.push(out.reply(topic, frame.join_ref, frame.ref, {}))
            return
        if event == "phx_join":
            self.join(frame)
            return
        channel = self.channels.get(topic)
        if channel is None:
            self.push(out.reply(topic, frame.join_ref, frame.ref, {"reason": "unmatched topic"}, "error"))
            return
        if event == "access_token":
            self.refresh(channel, frame.payload.get("access_token"))
        elif event == "phx_leave":
            self.push(out.reply(topic, channel.join_ref, frame.ref, {}))
            self._drop(channel)
            self._close(topic, channel.join_ref)
        elif event in ("presence", "broadcast"):
            self.push(out.reply(topic, channel.join_ref, frame.ref, {}))

    def join(self, frame: wire.ClientFrame) -> None:
        topic, payload = frame.topic, frame.payload
        if not topic.startswith(wire.TOPIC_PREFIX) or topic == wire.TOPIC_PREFIX:
            self._error_later(topic, frame, "Topic name must start with `realtime:` and not be empty")
            return
        if topic not in self.channels and len(self.channels) >= MAX_CHANNELS:
            self._error_later(topic, frame, TOO_MANY_CHANNELS)
            return
        token = payload.get("access_token") or payload.get("user_token") or self.apikey
        if not isinstance(token, str) or token.startswith("sb_"):
            token = self.apikey
        try:
            claims = verify(self.settings.secret, token)
        except AuthError as exc:
            self._error_later(topic, frame, exc.reason)
            return
        config = payload.get("config") or {}
        raw = config.get("postgres_changes") or [] if isinstance(config, dict) else []
        echoed: list[dict[str, Any]] = []
        bindings: list[Binding] = []
        problems: list[str] = []
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, dict):
                continue
            binding_id = wire.binding_id(item)
            echoed.append({**item, "id": binding_id})
            schema = str(item.get("schema") or "public")
            table = str(item.get("table") or "*")
            event = str(item.get("event") or "*")
            if event not in wire.LISTEN_EVENTS:
                event = "*"
            if not any(schema in (s, "*") and table in (t, "*") for s, t in PUBLISHED_TABLES):
                problems.append(
                    "Unable to subscribe to changes with given parameters. Please check Realtime is "
                    f"enabled for the given connect parameters: [event: {event}, schema: {schema}, "
                    f"table: {table}, filters: {item.get('filter')}]"
                )
                continue
            try:
                conditions = parse_filter(item.get("filter"))
            except FilterError as exc:
                problems.append(str(exc))
                continue
            bindings.append(Binding(binding_id, schema, table, event, conditions))
        old = self.channels.pop(topic, None)
        if old is not None:
            self._drop(old)
        channel = Channel(topic, frame.join_ref or frame.ref, self)
        self.channels[topic] = channel
        self.push(self.serializer.reply(topic, channel.join_ref, frame.ref, {"postgres_changes": echoed}))
        if old is not None:  # Phoenix's duplicate join: the old join is closed after the new ok
            self._close(topic, old.join_ref)
        if problems:
            self._system(channel, "postgres_changes", "error", "; ".join(problems))
        elif bindings:
            channel.subscriber = Subscriber(channel, tuple(bindings), claims)
            self.feed.add(channel.subscriber)
            self._system(channel, "postgres_changes", "ok", "Subscribed to PostgreSQL")
        self._arm_expiry(channel, claims)

    def refresh(self, channel: Channel, token: object) -> None:
        if not isinstance(token, str) or token.startswith("sb_"):
            return
        sub = channel.subscriber
        try:
            claims = verify(self.settings.secret, token)
        except AuthError as exc:
            self._expel(channel, exc.reason.removeprefix("InvalidJWTToken: "))
            return
        if sub is not None:
            sub.set_claims(claims)
            self._system(channel, "postgres_changes", "ok", "Subscribed to PostgreSQL")
        self._arm_expiry(channel, claims)

    # ----------------------------------------------------------------- helpers

    def _system(self, channel: Channel, extension: str, status: str, message: str) -> None:
        payload = wire.system_payload(channel.topic, extension, status, message)
        self.push(self.serializer.push(channel.topic, channel.join_ref, "system", payload))

    def _close(self, topic: str, join_ref: str | None) -> None:
        """``phx_close`` of one join: its ``ref`` is that join's ref, as Phoenix sends it."""
        self.push(self.serializer.push(topic, join_ref, "phx_close", {}, join_ref))

    def _expel(self, channel: Channel, message: str) -> None:
        self._system(channel, "system", "error", message)
        self._drop(channel)
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]
        self._close(channel.topic, channel.join_ref)

    def _drop(self, channel: Channel) -> None:
        if channel.subscriber is not None:
            self.feed.remove(channel.subscriber)
            channel.subscriber = None
        if channel.expiry is not None and channel.expiry is not asyncio.current_task():
            channel.expiry.cancel()
        channel.expiry = None
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]

    def _arm_expiry(self, channel: Channel, claims: Claims) -> None:
        if channel.expiry is not None:
            channel.expiry.cancel()

        async def expire() -> None:
            await asyncio.sleep(max(claims.exp - time.time(), 0.0))
            channel.expiry = None
            self._expel(channel, f"Token has expired {int(max(time.time() - claims.exp, 0))} seconds ago")

        channel.expiry = self._spawn(expire())

    def _error_later(self, topic: str, frame: wire.ClientFrame, reason: str) -> None:
        async def answer() -> None:
            await asyncio.sleep(self.settings.error_delay_s)
            self.push(self.serializer.reply(topic, frame.join_ref, frame.ref, {"reason": reason}, "error"))

        self._spawn(answer())

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._later.add(task)
        task.add_done_callback(self._later.discard)
        return task


def connection_claims(secret: str, apikey: str | None) -> Claims:
    """The socket's apikey must be a valid project JWT (anon key or a user token)."""
    return verify(secret, apikey)
