"""Client faces of ``sse`` (resumable) and ``sse-naive``.

Both read the raw byte stream through :class:`~progressbench.transports.sse.wire.SSEParser`
so heartbeats count as life (``Alive``) and the idle watchdog sees every
byte. Options (``ClientSettings.options``, unscaled seconds):

* ``heartbeat_s`` (15) — the server's heartbeat interval the watchdog assumes;
* ``idle_heartbeats`` (3) — silent for this many intervals = dead; ``0`` turns
  the watchdog off;
* ``reconnect_s`` — first reconnect delay when the server sent no ``retry:``.

Variant ``browser`` (``sse:browser``) behaves like ``EventSource``: a fixed
reconnect delay (the server's ``retry:``, else 3 s), no backoff growth and no
idle watchdog (a blackholed stream hangs until the OS gives up).

The resumable watcher yields every event the server sends, duplicates
included; reconnects send ``Last-Event-ID`` (the highest seq seen) and are
reported as ``Disconnected`` … ``Reconnected`` + ``Resumed(from_seq)``.
The naive watcher can only POST again with its own job id
(``Resubmitted``); it resumes nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator

import httpx
from progressbench.transports.http import phone_client, submit_job
from progressbench.transports.sse.wire import Comment, Message, Retry, SSEParser
from progressbench.transports.types import ClientSettings, JobRequest

from progressbench.core.errors import TransportError
from progressbench.core.events import (
    TERMINAL,
    Alive,
    ClientEvent,
    Connected,
    Disconnected,
    Progress,
    Reconnected,
    Resubmitted,
    Resumed,
    Submitted,
)

_FATAL = frozenset({400, 401, 403, 404, 409, 422})


class _Drop(Exception):
    """The stream ended or failed; the reason becomes a ``Disconnected``."""


class _SseWatcherBase:
    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        timing = settings.timing
        opts = settings.options
        self.browser = settings.variant == "browser"
        heartbeat = timing.scaled(float(opts.get("heartbeat_s", 15.0)))
        beats = 0 if self.browser else int(opts.get("idle_heartbeats", 3))
        self.idle_s: float | None = heartbeat * beats if beats > 0 else None
        default_reconnect = 3.0 if self.browser else 1.0
        self.reconnect_s = timing.scaled(float(opts.get("reconnect_s", default_reconnect)))
        self.max_backoff = timing.scaled(30.0)
        self.connect_timeout = max(timing.scaled(10.0), 1.0)
        self.retry_hint: float | None = None

    def _delay(self, attempt: int) -> float:
        base = self.retry_hint if self.retry_hint is not None else self.reconnect_s
        if self.browser:
            return base
        ceiling: float = min(base * 2.0 ** min(max(attempt - 1, 0), 16), max(self.max_backoff, base))
        return ceiling * random.uniform(0.5, 1.0)

    def _client(self) -> httpx.AsyncClient:
        # no read timeout: the idle watchdog decides when a quiet stream is dead
        return phone_client(
            self.settings.endpoints["api"],
            self.settings.timing,
            read_s=None,
            connect_s=self.connect_timeout,
        )

    async def _read(self, response: httpx.Response) -> AsyncIterator[Message | Comment]:
        """Parsed items of one response; raises :class:`_Drop` when it goes silent or breaks."""
        parser = SSEParser()
        chunks = response.aiter_bytes()
        while True:
            try:
                if self.idle_s is None:
                    chunk = await anext(chunks)
                else:
                    chunk = await asyncio.wait_for(anext(chunks), self.idle_s)
            except StopAsyncIteration:
                raise _Drop("stream closed") from None
            except TimeoutError:
                raise _Drop("idle watchdog") from None
            except httpx.HTTPError as exc:
                raise _Drop(type(exc).__name__) from None
            for item in parser.feed(chunk):
                if isinstance(item, Retry):
                    self.retry_hint = item.milliseconds / 1000.0
                else:
                    yield item

    @staticmethod
    def _progress(message: Message) -> Progress:
        body = json.loads(message.data)
        return Progress(
            job_id=body["job_id"], seq=int(body["seq"]), kind=body["kind"], message=body["message"]
        )


class ResumableSseWatcher(_SseWatcherBase):
    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        async with self._client() as http:
            created = await submit_job(http, "/sse/jobs", request.body(), self._delay)
            yield Submitted(job_id=created["job_id"], token=created["token"])
            headers = {"authorization": f"Bearer {created['token']}", "accept": "text/event-stream"}
            href = created["events_href"]
            cursor: int | None = None
            down_attempts = 0
            connected = False
            while True:
                if cursor is not None:
                    headers["last-event-id"] = str(cursor)
                reason = ""
                try:
                    async with http.stream("GET", href, headers=headers) as response:
                        status = response.status_code
                        if status in _FATAL:
                            body = (await response.aread()).decode(errors="replace")[:200]
                            raise TransportError(f"event stream answered {status}: {body}")
                        if status != 200:
                            raise _Drop(f"http {status}")
                        if not connected:
                            connected = True
                            yield Connected()
                        if down_attempts:
                            yield Reconnected(attempt=down_attempts)
                            yield Resumed(from_seq=cursor or 0)
                            down_attempts = 0
                        async for item in self._read(response):
                            if isinstance(item, Comment):
                                yield Alive()
                                continue
                            event = self._progress(item)
                            yield event
                            cursor = event.seq if cursor is None else max(cursor, event.seq)
                            if event.kind in TERMINAL:
                                return
                except _Drop as drop:
                    reason = str(drop)
                except httpx.HTTPError as exc:
                    reason = type(exc).__name__
                if down_attempts == 0:
                    yield Disconnected(reason=reason)
                down_attempts += 1
                await asyncio.sleep(self._delay(down_attempts))


class NaiveSseWatcher(_SseWatcherBase):
    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        job_id = str(uuid.uuid4())
        body = {**request.body(), "job_id": job_id}
        async with self._client() as http:
            posts = 0
            down_attempts = 0
            connected = False
            while True:
                reason = ""
                try:
                    async with http.stream(
                        "POST", "/sse-naive/jobs", json=body, headers={"idempotency-key": job_id}
                    ) as response:
                        status = response.status_code
                        if status in _FATAL:
                            text = (await response.aread()).decode(errors="replace")[:200]
                            raise TransportError(f"create job answered {status}: {text}")
                        if status != 200:
                            raise _Drop(f"http {status}")
                        posts += 1
                        async for item in self._read(response):
                            if isinstance(item, Comment):
                                yield Alive()
                                continue
                            if item.event == "created":
                                created = json.loads(item.data)
                                if posts == 1:
                                    yield Submitted(job_id=created["job_id"], token=created["token"])
                                else:
                                    yield Resubmitted(job_id=created["job_id"])
                                if not connected:
                                    connected = True
                                    yield Connected()
                                if down_attempts:
                                    yield Reconnected(attempt=down_attempts)
                                    down_attempts = 0
                                continue
                            event = self._progress(item)
                            yield event
                            if event.kind in TERMINAL:
                                return
                except _Drop as drop:
                    reason = str(drop)
                except httpx.HTTPError as exc:
                    reason = type(exc).__name__
                if connected and down_attempts == 0:
                    yield Disconnected(reason=reason)
                down_attempts += 1
                await asyncio.sleep(self._delay(down_attempts))
