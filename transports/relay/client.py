"""Client face of ``relay``: a partysocket-style reconnecting WebSocket plus snapshot and dedupe.

The phone POSTs the job, then holds a WebSocket (the ``websockets`` library)
to the job's room on the ``rooms`` endpoint. On every (re)connect it first
joins the room, then fetches ``GET /relay/jobs/{id}/events?after=N`` from the
API, where N is the highest seq below which it has seen everything; events
that come both ways are shown once (policy ``SNAPSHOT`` of
:mod:`progressbench.core.reconnect`: the book's contiguous prefix is N).
A room message that skips a seq (a publish was dropped) makes it fetch the
snapshot before showing it, so the user sees the steps in order.

Reconnects follow partysocket's defaults (:mod:`progressbench.transports.relay.resume`):
first attempt at once, then 1-5 s (random per phone) × 1.3 per retry up to
10 s, a 4 s connect timeout, unlimited retries, the counter reset after 5 s
up. All are scaled by the run's time scale; the connect timeout never goes
below :data:`MIN_CONNECT_S`, because scaling compresses the job, not the
client machine's CPU.

Options (``ClientSettings.options``, unscaled seconds):

* ``heartbeat_s`` — send a WebSocket ping this often and drop the socket if
  no pong comes within the same time. Off by default: partysocket has no
  heartbeat, so an idle socket behind a CGNAT dies silently.
* ``min_delay_s`` — fix partysocket's random first delay (tests).

Reported faithfully: ``Connected`` once; each outage is one ``Disconnected``
then, when a socket is back, ``Reconnected(attempts)`` and
``Resumed(from_seq)``; 401/403/404 on join or snapshot is a
:class:`~progressbench.core.errors.TransportError`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from progressbench.transports.canary import probe_get
from progressbench.transports.http import access_token, phone_client, submit_job
from progressbench.transports.redial import Dropped, redial
from progressbench.transports.relay.resume import (
    CONNECT_TIMEOUT_S,
    MAX_DELAY_S,
    MIN_DELAY_HIGH_S,
    MIN_DELAY_LOW_S,
    MIN_UPTIME_S,
    partysocket,
)
from progressbench.transports.relay.timers import CLOSE_TIMEOUT_S, MIN_CLOSE_S, MIN_CONNECT_S
from progressbench.transports.types import ClientSettings, JobRequest, ProbeReport
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from progressbench.core.errors import TransportError
from progressbench.core.events import ClientEvent, Progress, Submitted
from progressbench.core.reconnect import SNAPSHOT, Reconnector

_FATAL = frozenset({401, 403, 404})


class RelayWatcher:
    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        timing = settings.timing
        opts = settings.options
        self.ack = "end" if settings.variant == "ack-at-end" else "now"
        first = float(opts.get("min_delay_s", random.uniform(MIN_DELAY_LOW_S, MIN_DELAY_HIGH_S)))
        self.backoff = partysocket(timing.scaled(first), max_delay_s=timing.scaled(MAX_DELAY_S))
        self.connect_timeout = max(timing.scaled(CONNECT_TIMEOUT_S), MIN_CONNECT_S)
        self.min_uptime = timing.scaled(MIN_UPTIME_S)
        beat = float(opts.get("heartbeat_s", 0) or 0)
        self.heartbeat: float | None = timing.scaled(beat) if beat > 0 else None
        self.close_timeout = max(timing.scaled(CLOSE_TIMEOUT_S), MIN_CLOSE_S)

    def _room_url(self, room: str, token: str) -> str:
        base = self.settings.endpoints["rooms"].rstrip("/")
        scheme, _, rest = base.partition("://")
        ws = "wss" if scheme == "https" else "ws"
        return f"{ws}://{rest}{room}?token={token}"

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        """The canary: the victim's snapshot URL and room socket with the canary's access token."""
        report = ProbeReport()
        async with phone_client(self.settings.endpoints["api"], self.settings.timing) as http:
            token = await access_token(http, phone, self.backoff.delay)
            path = f"/relay/jobs/{victim_job_id}/events"
            await probe_get(http, report, "snapshot-url", path, victim_job_id, token)
        for name, room_token in (("room-socket", token), ("room-socket-no-token", "")):
            url = self._room_url(f"/parties/main/{victim_job_id}", room_token)
            foreign, outcome = 0, "joined"
            try:
                async with asyncio.timeout(window_s):
                    async with connect(url, open_timeout=self.connect_timeout) as socket:
                        async for message in socket:
                            try:
                                event = json.loads(message)
                            except ValueError:
                                continue
                            if isinstance(event, dict) and "seq" in event:
                                foreign += 1
            except InvalidStatus as exc:
                outcome = f"refused {exc.response.status_code}"
            except TimeoutError:
                outcome += f", listened {window_s:.1f}s"
            except (OSError, InvalidHandshake, ConnectionClosed) as exc:
                outcome = f"{type(exc).__name__}"
            report.add(name, outcome, foreign)
        return report

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        async with phone_client(self.settings.endpoints["api"], self.settings.timing) as http:
            created = await submit_job(
                http,
                "/relay/jobs",
                request.body(),
                self.backoff.delay,
                params={"ack": self.ack},
                phone=request.owner,
                timing=self.settings.timing,
            )
            for finding in created.findings():
                yield finding
            job_id, token = created["job_id"], created["token"]
            yield Submitted(job_id=job_id, token=token)
            room = _Room(
                url=self._room_url(created["room"], token),
                http=http,
                href=created["events_href"],
                auth={"authorization": f"Bearer {token}"},
                job_id=job_id,
                state=Reconnector(SNAPSHOT, stable_after_s=self.min_uptime),
            )
            async for event in redial(room.state, self.backoff.delay, partial(self._visit, room)):
                yield event

    async def _visit(self, room: _Room) -> AsyncGenerator[ClientEvent, None]:
        """Join the room, then read the snapshot, then follow the room until the socket dies."""
        ws = await self._connect(room.url)
        try:
            for event in room.state.up(time.monotonic()):
                yield event
            for event in await room.snapshot():
                yield event
            while True:
                try:
                    message = _parse(await ws.recv())
                except ConnectionClosed as exc:
                    raise Dropped(f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}") from None
                if message is not None:
                    for event in await room.show(message):
                        yield event
        finally:
            await ws.close()

    async def _connect(self, url: str) -> ClientConnection:
        try:
            return await connect(
                url,
                open_timeout=self.connect_timeout,
                ping_interval=self.heartbeat,
                ping_timeout=self.heartbeat,
                close_timeout=self.close_timeout,
                proxy=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in _FATAL:
                raise TransportError(f"room refused the socket: {status}") from None
            raise Dropped(f"http {status}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise Dropped(type(exc).__name__) from None


@dataclass
class _Room:
    """One job's room as this phone sees it: the socket's URL, the snapshot route, the seq book."""

    url: str
    http: httpx.AsyncClient
    href: str
    auth: dict[str, str]
    job_id: str
    state: Reconnector

    async def show(self, message: dict[str, Any]) -> list[Progress]:
        """A room message, after the snapshot that fills any hole below it (so steps show in order).

        Every receipt is returned; a repeat the dedupe hides has ``shown=False``.
        """
        seq = int(message["seq"])
        shown = await self.snapshot() if self.state.book.missing_before(seq) else []
        event = Progress(
            job_id=str(message.get("job_id", self.job_id)),
            seq=seq,
            kind=str(message["kind"]),
            message=str(message.get("message", "")),
        )
        shown.append(self.state.receive(event, "live").event)
        return shown

    async def snapshot(self) -> list[Progress]:
        """The events after the book's contiguous prefix, in seq order (``shown=False``: already seen)."""
        try:
            response = await self.http.get(self.href, params={"after": self.state.cursor}, headers=self.auth)
        except httpx.HTTPError as exc:
            raise Dropped(f"snapshot {type(exc).__name__}") from None
        if response.status_code in _FATAL:
            raise TransportError(f"snapshot answered {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            raise Dropped(f"snapshot http {response.status_code}")
        rows = response.json()["events"]
        events = [
            Progress(job_id=r["job_id"], seq=int(r["seq"]), kind=r["kind"], message=r["message"])
            for r in rows
        ]
        return [self.state.receive(e, "snapshot").event for e in events]


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "event" or "seq" not in message:
        return None
    return message
