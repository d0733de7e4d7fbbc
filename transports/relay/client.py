"""Client face of ``relay``: a partysocket-style reconnecting WebSocket plus snapshot and dedupe.

The phone POSTs the job, then holds a WebSocket (the ``websockets`` library)
to the job's room on the ``rooms`` endpoint. On every (re)connect it first
joins the room, then fetches ``GET /relay/jobs/{id}/events?after=N`` from the
API, where N is the highest seq below which it has seen everything; events
that come both ways are shown once (:class:`~progressbench.transports.relay.resume.SeqTracker`).
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
from collections.abc import AsyncIterator
from typing import Any

import httpx
from progressbench.transports.http import phone_client, submit_job
from progressbench.transports.relay.resume import (
    CONNECT_TIMEOUT_S,
    GROW,
    MAX_DELAY_S,
    MIN_DELAY_HIGH_S,
    MIN_DELAY_LOW_S,
    MIN_UPTIME_S,
    SeqTracker,
    reconnect_delay,
)
from progressbench.transports.types import ClientSettings, JobRequest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from progressbench.core.errors import TransportError
from progressbench.core.events import (
    TERMINAL,
    ClientEvent,
    Connected,
    Disconnected,
    Progress,
    Reconnected,
    Resumed,
    Submitted,
)

_FATAL = frozenset({401, 403, 404})
#: Floor (seconds) for the scaled connect timeout.
MIN_CONNECT_S = 1.0


class _Drop(Exception):
    """The socket or the snapshot failed; the reason becomes a ``Disconnected``."""


class RelayWatcher:
    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        timing = settings.timing
        opts = settings.options
        self.ack = "end" if settings.variant == "ack-at-end" else "now"
        first = float(opts.get("min_delay_s", random.uniform(MIN_DELAY_LOW_S, MIN_DELAY_HIGH_S)))
        self.min_delay = timing.scaled(first)
        self.max_delay = timing.scaled(MAX_DELAY_S)
        self.connect_timeout = max(timing.scaled(CONNECT_TIMEOUT_S), MIN_CONNECT_S)
        self.min_uptime = timing.scaled(MIN_UPTIME_S)
        beat = float(opts.get("heartbeat_s", 0) or 0)
        self.heartbeat: float | None = timing.scaled(beat) if beat > 0 else None
        self.close_timeout = max(timing.scaled(2.0), 0.2)

    def _room_url(self, room: str, token: str) -> str:
        base = self.settings.endpoints["rooms"].rstrip("/")
        scheme, _, rest = base.partition("://")
        ws = "wss" if scheme == "https" else "ws"
        return f"{ws}://{rest}{room}?token={token}"

    def _delay(self, attempt: int) -> float:
        """partysocket's schedule: min × 1.3^(attempt-1), capped at max."""
        return reconnect_delay(attempt, self.min_delay, GROW, self.max_delay)

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        async with phone_client(self.settings.endpoints["api"], self.settings.timing) as http:
            created = await submit_job(
                http, "/relay/jobs", request.body(), self._delay, params={"ack": self.ack}
            )
            job_id, token = created["job_id"], created["token"]
            yield Submitted(job_id=job_id, token=token)
            url = self._room_url(created["room"], token)
            href = created["events_href"]
            auth = {"authorization": f"Bearer {token}"}
            tracker = SeqTracker()
            retry_count = 0
            connected_once = False
            down_attempts = 0  # connection attempts since the outage began (0: not down)
            while True:
                await asyncio.sleep(reconnect_delay(retry_count, self.min_delay, GROW, self.max_delay))
                retry_count += 1
                reason = ""
                ws: ClientConnection | None = None
                opened = 0.0
                try:
                    ws = await self._connect(url)
                    opened = time.monotonic()
                    if not connected_once:
                        connected_once = True
                        yield Connected()
                    if down_attempts:
                        yield Reconnected(attempt=down_attempts)
                        yield Resumed(from_seq=tracker.contiguous)
                        down_attempts = 0
                    finished = False
                    for event in await self._snapshot(http, href, auth, tracker):
                        yield event
                        finished = finished or event.kind in TERMINAL
                    if finished:
                        return
                    while True:
                        message = _parse(await ws.recv())
                        if message is None:
                            continue
                        seq = int(message["seq"])
                        if tracker.has_gap_before(seq) and seq not in tracker.seen:
                            for event in await self._snapshot(http, href, auth, tracker):
                                yield event
                                finished = finished or event.kind in TERMINAL
                        if tracker.add(seq):
                            yield Progress(
                                job_id=str(message.get("job_id", job_id)),
                                seq=seq,
                                kind=str(message["kind"]),
                                message=str(message.get("message", "")),
                            )
                            finished = finished or message["kind"] in TERMINAL
                        if finished:
                            return
                except _Drop as drop:
                    reason = str(drop)
                except ConnectionClosed as exc:
                    reason = f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    reason = type(exc).__name__
                finally:
                    if ws is not None:
                        await ws.close()
                if opened and time.monotonic() - opened >= self.min_uptime:
                    retry_count = 1  # partysocket resets the counter after minUptime; this retry is #1
                if down_attempts == 0:
                    yield Disconnected(reason=reason)
                down_attempts += 1

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
            raise _Drop(f"http {status}") from None

    async def _snapshot(
        self, http: httpx.AsyncClient, href: str, auth: dict[str, str], tracker: SeqTracker
    ) -> list[Progress]:
        """The events after the tracker's cursor that the user has not seen, in seq order."""
        try:
            response = await http.get(href, params={"after": tracker.contiguous}, headers=auth)
        except httpx.HTTPError as exc:
            raise _Drop(f"snapshot {type(exc).__name__}") from None
        if response.status_code in _FATAL:
            raise TransportError(f"snapshot answered {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            raise _Drop(f"snapshot http {response.status_code}")
        fresh = []
        for row in response.json()["events"]:
            seq = int(row["seq"])
            if tracker.add(seq):
                fresh.append(
                    Progress(job_id=row["job_id"], seq=seq, kind=row["kind"], message=row["message"])
                )
        return fresh


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "event" or "seq" not in message:
        return None
    return message
