"""Client faces of ``sse`` (resumable) and ``sse-naive``.

Both read the raw byte stream through :class:`~progressbench.transports.sse.wire.SSEParser`
so heartbeats count as life (``Alive``) and the idle watchdog sees every
byte. Options (``ClientSettings.options``, unscaled seconds):

* ``heartbeat_s`` (15) — the server's heartbeat interval the watchdog assumes;
* ``idle_heartbeats`` (3; 0 for ``sse-naive``) — silent for this many intervals = dead; ``0`` turns
  the watchdog off;
* ``reconnect_s`` — first reconnect delay when the server sent no ``retry:``.

The resumable watcher creates its job with httpx and then holds its event
stream on a plain asyncio connection parsed by h11
(:mod:`~progressbench.transports.h11stream`): same URL, headers, timeouts
and failure names, a fraction of the memory per phone. The naive watcher's
stream *is* its POST, so it stays on httpx.

Variant ``browser`` (``sse:browser``) is not here: its phones are real
browser pages (:mod:`progressbench.transports.sse.browser`).

Both are I/O drivers over :mod:`progressbench.core.reconnect`, run by
:func:`~progressbench.transports.redial.redial`. The resumable watcher
(policy ``LAST_EVENT_ID``) yields every event the server sends, duplicates
included; reconnects send ``Last-Event-ID`` (the highest seq seen) and are
reported as ``Disconnected`` … ``Reconnected`` + ``Resumed(from_seq)``.
The naive watcher (policy ``RESTART``) can only POST a new job after a
user-retry delay (``Resubmitted`` with the new job's id); it resumes
nothing, and a POST that fails before any stream stood is a failed
submission, not a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from functools import partial
from typing import Any

import httpx
from progressbench.transports.canary import probe_get, probe_sse
from progressbench.transports.h11stream import StreamError, Target, open_stream, target_of
from progressbench.transports.http import (
    Submission,
    access_token,
    phone_client,
    submit_job,
    tls_context,
)
from progressbench.transports.redial import Dropped, redial
from progressbench.transports.sse.timers import MIN_STREAM_CONNECT_S
from progressbench.transports.sse.wire import Comment, Message, Retry, SSEParser
from progressbench.transports.timers import CONNECT_S
from progressbench.transports.types import ClientSettings, JobRequest, ProbeReport

from progressbench.core.errors import TransportError
from progressbench.core.events import Alive, ClientEvent, Progress, Resubmitted, Submitted
from progressbench.core.reconnect import LAST_EVENT_ID, RESTART, Backoff, Draw, Reconnector

_FATAL = frozenset({400, 401, 403, 404, 409, 422})
#: Body bytes read from a refusal: its first 200 characters go into the error.
_EXCERPT_BYTES = 4096
#: Every heartbeat is the same news: one shared event, not an object per comment per phone.
_ALIVE = Alive()
#: The naive user's retry delay after an error, unscaled seconds (ASSUMPTION: read the error, tap again).
USER_RETRY_MIN_S = 5.0
USER_RETRY_MAX_S = 30.0


class _LeftOwnJob(Exception):
    """The canary's probe POST started a job of its own: nothing foreign, stop reading."""


class _SseWatcherBase:
    #: Silent heartbeat intervals before a stream counts as dead (option ``idle_heartbeats``).
    default_idle_heartbeats = 3

    # Each phone holds its watcher for the whole session (10,000 per load process): no instance dict.
    __slots__ = ("backoff", "connect_timeout", "idle_s", "max_backoff", "reconnect_s", "settings")

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        timing = settings.timing
        opts = settings.options
        heartbeat = timing.scaled(float(opts.get("heartbeat_s", 15.0)))
        beats = int(opts.get("idle_heartbeats", self.default_idle_heartbeats))
        self.idle_s: float | None = heartbeat * beats if beats > 0 else None
        self.reconnect_s = timing.scaled(float(opts.get("reconnect_s", 1.0)))
        self.max_backoff = timing.scaled(30.0)
        self.connect_timeout = max(timing.scaled(CONNECT_S), MIN_STREAM_CONNECT_S)
        self.backoff = self._backoff(self.reconnect_s)

    def _backoff(self, base: float) -> Backoff:
        """``base`` (the server's ``retry:``, else ``reconnect_s``), doubling with jitter."""
        return Backoff(initial=base, ceiling=max(self.max_backoff, base), jitter=0.5)

    def _delay(self, retry: int) -> float:
        return self.backoff.delay(retry)

    def _client(self) -> httpx.AsyncClient:
        # no read timeout: the idle watchdog decides when a quiet stream is dead
        return phone_client(
            self.settings.endpoints["api"],
            self.settings.timing,
            read_s=None,
            connect_s=self.connect_timeout,
        )

    @contextlib.asynccontextmanager
    async def _open(
        self, http: httpx.AsyncClient, what: str, method: str, url: str, **kwargs: Any
    ) -> AsyncIterator[httpx.Response]:
        """A 200 event stream; a refusal no retry fixes is a TransportError, anything else a drop."""
        try:
            async with http.stream(method, url, **kwargs) as response:
                status = response.status_code
                if status in _FATAL:
                    body = (await response.aread()).decode(errors="replace")[:200]
                    raise TransportError(f"{what} answered {status}: {body}")
                if status != 200:
                    raise Dropped(f"http {status}")
                yield response
        except httpx.HTTPError as exc:
            raise Dropped(type(exc).__name__) from None

    async def _next_items(self, parser: SSEParser, chunks: AsyncIterator[bytes]) -> list[Message | Comment]:
        """What the next chunk completes (maybe nothing); :class:`Dropped` when it goes silent or ends.

        A broken connection surfaces as the chunk source's own error (httpx's or
        :class:`StreamError`), which the caller translates. ``retry:`` resets
        the back-off here.
        """
        try:
            # a timeout scope, not wait_for: no extra task per chunk (10,000 phones hold one each)
            async with asyncio.timeout(self.idle_s):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            raise Dropped("stream closed") from None
        except TimeoutError:
            raise Dropped("idle watchdog") from None
        items: list[Message | Comment] = []
        for item in parser.feed(chunk):
            if isinstance(item, Retry):
                self.backoff = self._backoff(item.milliseconds / 1000.0)
            else:
                items.append(item)
        return items

    async def _read(self, chunks: AsyncIterator[bytes]) -> AsyncGenerator[Message | Comment, None]:
        """Parsed items of one response body, as :meth:`_next_items` gives them."""
        parser = SSEParser()
        while True:
            for item in await self._next_items(parser, chunks):
                yield item

    @staticmethod
    def _progress(message: Message) -> Progress:
        body = json.loads(message.data)
        return Progress(
            job_id=body["job_id"], seq=int(body["seq"]), kind=body["kind"], message=body["message"]
        )


class _Dial:
    """The resumable phone's next stream attempt, for :func:`redial`: one slotted object held for
    the session's life where a ``functools.partial`` (its args tuple, kwargs dict and bound
    method) cost ~270 bytes a phone."""

    __slots__ = ("headers", "state", "target", "watcher")

    def __init__(
        self, watcher: ResumableSseWatcher, target: Target, headers: dict[str, str], state: Reconnector
    ) -> None:
        self.watcher = watcher
        self.target = target
        self.headers = headers
        self.state = state

    def __call__(self) -> AsyncGenerator[ClientEvent, None]:
        return self.watcher.attempt(self.target, self.headers, self.state)


class ResumableSseWatcher(_SseWatcherBase):
    __slots__ = ()

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        """The canary: the victim's event stream with the canary's access token, then with none."""
        report = ProbeReport()
        href = f"/sse/jobs/{victim_job_id}/events"
        async with self._client() as http:
            token = await access_token(http, phone, self._delay)
            for name, auth in (
                ("event-stream", {"authorization": f"Bearer {token}"}),
                ("event-stream-no-token", {}),
            ):
                headers = {**auth, "accept": "text/event-stream", "last-event-id": "0"}
                await probe_sse(http, report, name, "GET", href, window_s, headers)
            await probe_get(http, report, "event-stream-plain-get", href, victim_job_id, token)
        return report

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        """Create the job with httpx, then hold its event stream on a light connection of its own.

        The httpx client is closed before the stream opens (see
        :mod:`~progressbench.transports.h11stream`): a phone holding its
        stream keeps one socket, an h11 parser and this generator, nothing
        more. The stream's token is the job's read token, which does not
        expire while the job runs: no call needs httpx again.
        """
        created = await self._submit(request)
        for finding in created.findings():
            yield finding
        yield Submitted(job_id=created["job_id"], token=created["token"])
        try:
            target = target_of(self.settings.endpoints["api"], created["events_href"])
        except ValueError as exc:
            raise TransportError(f"create job answered an unusable events_href: {exc}") from None
        headers = {"authorization": f"Bearer {created['token']}", "accept": "text/event-stream"}
        del created  # this frame lives as long as the stream: keep only what the stream needs
        state = Reconnector(LAST_EVENT_ID)
        async for event in redial(state, self._delay, _Dial(self, target, headers, state)):
            yield event

    async def _submit(self, request: JobRequest) -> Submission:
        """POST the job on a client of its own, closed as soon as the job exists."""
        async with self._client() as http:
            return await submit_job(
                http,
                "/sse/jobs",
                request.body(),
                self._delay,
                phone=request.owner,
                timing=self.settings.timing,
            )

    async def attempt(
        self, target: Target, headers: dict[str, str], state: Reconnector
    ) -> AsyncGenerator[ClientEvent, None]:
        """One GET of the event stream, after ``Last-Event-ID`` once anything arrived.

        ``_open``'s rules without httpx: a refusal no retry fixes is a
        TransportError with the body's start, any other non-200 or a broken
        connection a drop. Written flat (no context manager, no generator per
        layer): each layer would be a frame held per phone for the stream's life.
        """
        if state.book.highest:
            headers["last-event-id"] = str(state.cursor)
        try:
            stream = await open_stream(
                target, headers, connect_timeout=self.connect_timeout, tls=tls_context()
            )
        except StreamError as exc:
            raise Dropped(exc.reason) from None
        try:
            if stream.status in _FATAL:
                body = (await stream.read(_EXCERPT_BYTES)).decode(errors="replace")[:200]
                raise TransportError(f"event stream answered {stream.status}: {body}")
            if stream.status != 200:
                raise Dropped(f"http {stream.status}")
            for event in state.up(time.monotonic()):
                yield event
            parser = SSEParser()
            while True:
                for item in await self._next_items(parser, stream):
                    if isinstance(item, Comment):
                        yield _ALIVE
                        continue
                    yield state.receive(self._progress(item)).event
        except StreamError as exc:
            raise Dropped(exc.reason) from None
        finally:
            stream.close()


class NaiveSseWatcher(_SseWatcherBase):
    """The phone of the naive pattern: one POST is one job; after an error, the user taps retry.

    On a drop it shows the error (``Disconnected``), waits the user's retry
    delay (uniform between ``user_retry_min_s`` and ``user_retry_max_s``,
    5-30 s unscaled: ASSUMPTION, a person reading an error and tapping
    again) and POSTs a *new* job (``Resubmitted`` with the new id): a second
    execution of the same intent whose progress starts again at step 1. It
    resumes nothing. Variant ``cancel`` asks for the platform that cancels
    the handler when the client goes (``?on_disconnect=cancel``).

    Like a ``fetch`` reading a stream, it has no idle watchdog by default
    (``idle_heartbeats`` 0; the naive server sends no heartbeats either): a
    blackholed stream hangs, with no error, until the OS or the user gives up.
    """

    default_idle_heartbeats = 0

    __slots__ = ("draw", "params", "user_retry")

    def __init__(self, settings: ClientSettings, draw: Draw = random.uniform) -> None:
        super().__init__(settings)
        opts = settings.options
        low = float(opts.get("user_retry_min_s", USER_RETRY_MIN_S))
        high = max(float(opts.get("user_retry_max_s", USER_RETRY_MAX_S)), low)
        self.user_retry = (settings.timing.scaled(low), settings.timing.scaled(high))
        self.draw = draw
        self.params = {"on_disconnect": "cancel"} if settings.variant == "cancel" else {}

    def _user_delay(self, retry: int) -> float:
        return 0.0 if retry <= 0 else self.draw(*self.user_retry)

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        """The canary: POST naming the victim's job id (body and ``Idempotency-Key``): the old takeover.

        The only client face of ``sse-naive`` is the POST that runs a job and
        streams it. A server that lets the client name the job hands over the
        victim's job (its ``created`` event names the victim and carries a
        token for it, then its events): each of those is foreign. A server
        that refuses the body, or ignores the id and starts a *new* job,
        leaks nothing (a new job is the canary's own and is left at once).
        """
        report = ProbeReport()
        async with self._client() as http:
            token = await access_token(http, phone, self._delay)
            headers = {"authorization": f"Bearer {token}", "idempotency-key": victim_job_id}
            body = {"seed": 0, "time_scale": self.settings.timing.time_scale, "job_id": victim_job_id}
            foreign, outcome = 0, "refused"
            try:
                async with asyncio.timeout(window_s):
                    async with http.stream("POST", "/sse-naive/jobs", json=body, headers=headers) as response:
                        outcome = f"http {response.status_code}"
                        if response.status_code == 200:
                            parser = SSEParser()
                            async for chunk in response.aiter_bytes():
                                for item in parser.feed(chunk):
                                    if not isinstance(item, Message):
                                        continue
                                    data = json.loads(item.data)
                                    if str(data.get("job_id")) != victim_job_id:
                                        outcome += ", a new job of its own (left at once)"
                                        raise _LeftOwnJob
                                    foreign += 1
            except _LeftOwnJob:
                pass
            except TimeoutError:
                outcome += f", listened {window_s:.1f}s"
            except (httpx.HTTPError, ValueError) as exc:
                outcome += f"; {type(exc).__name__}"
            report.add("create-with-victim-id", outcome, foreign)
        return report

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        async with self._client() as http:
            state = Reconnector(RESTART)
            attempt = partial(self._post, http, request, state, itertools.count(1))
            async for event in redial(state, self._user_delay, attempt):
                yield event

    async def _post(
        self, http: httpx.AsyncClient, request: JobRequest, state: Reconnector, posts: Iterator[int]
    ) -> AsyncGenerator[ClientEvent, None]:
        """One POST: a new job, run and streamed; the first that streams is the submission."""
        headers = {"authorization": f"Bearer {await access_token(http, request.owner, self._delay)}"}
        async with self._open(
            http,
            "create job",
            "POST",
            "/sse-naive/jobs",
            json=request.body(),
            headers=headers,
            params=self.params,
        ) as response:
            async with contextlib.aclosing(self._read(response.aiter_bytes())) as items:
                async for item in items:
                    if isinstance(item, Comment):
                        yield _ALIVE
                    elif item.event == "created":
                        created = json.loads(item.data)
                        if next(posts) == 1:
                            yield Submitted(job_id=created["job_id"], token=created["token"])
                        else:
                            yield Resubmitted(job_id=created["job_id"])
                        state.new_job()
                        for event in state.up(time.monotonic()):
                            yield event
                    else:
                        yield state.receive(self._progress(item)).event
