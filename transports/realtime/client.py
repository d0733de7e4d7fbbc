"""Client face of ``realtime``: the official ``realtime`` client, unchanged, plus the app's refetch.

What a phone app does with Supabase Realtime after SSE failed it:

1. ``POST /realtime/jobs`` → ``{job_id, token, anon_key}``.
2. ``AsyncRealtimeClient(<realtime>/realtime/v1, anon_key)``, ``set_auth(token)``
   *before* subscribing (RLS sees the user's claims), one channel with an
   INSERT binding on ``job_events`` filtered ``job_id=eq.<id>``.
3. On every "Subscribed to PostgreSQL" (first subscribe and every rejoin)
   refetch the rows after the last contiguous seq through the API, then
   apply live rows, deduplicated by seq. Realtime never replays: the refetch
   is the only way to fill what was missed while the socket was down.

Reconnects are counted from the channel's subscribe callback:
CHANNEL_ERROR/TIMED_OUT → ``Disconnected``; SUBSCRIBED again →
``Reconnected``; the refetch after it → ``Resumed``.

The library's silent failure modes are watched every ``watchdog_s``, each
reported as a ``Finding`` and recovered with a fresh client (resubscribe +
refetch): ``client-gave-up`` (its 5 reconnect attempts are spent; it is
dead and says nothing), ``listener-died`` (the listen task ended while the
socket looks connected, e.g. after a raising callback — ours never raise),
``channel-closed`` (the server closed the channel: token expiry or the
duplicate-join trap; the client never rejoins). A periodic refetch
(``refetch_s``, default 8 s scaled) is the app-level safety net when nothing
arrives; rows it finds that realtime should have delivered are reported as
``Finding("refetch-recovered")``.

Variant ``no-auth``: the same client *without* ``set_auth`` — it joins with
the anon key, RLS hides every row, and nothing arrives with no error. It
never refetches (that would hide the trap); a ``Finding("no-auth")`` at the
start names the cause in the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from progressbench.transports.http import phone_client, submit_job
from progressbench.transports.realtime.config import WatcherOptions
from progressbench.transports.types import ClientSettings, JobRequest
from realtime import AsyncRealtimeChannel, AsyncRealtimeClient
from realtime.types import RealtimePostgresChangesListenEvent, RealtimeSubscribeStates

from progressbench.core.errors import TransportError
from progressbench.core.events import (
    TERMINAL,
    ClientEvent,
    Connected,
    Disconnected,
    Finding,
    Progress,
    Reconnected,
    Resumed,
    Submitted,
)

log = logging.getLogger(__name__)

SUBSCRIBED_TO_POSTGRES = "Subscribed to PostgreSQL"


@dataclass(frozen=True, slots=True)
class _Row:
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _State:
    generation: int
    state: RealtimeSubscribeStates
    error: str


@dataclass(frozen=True, slots=True)
class _Live:
    generation: int


_Item = _Row | _State | _Live


@dataclass
class _Link:
    """One official client + one channel; replaced whole when the library fails silently."""

    generation: int
    client: AsyncRealtimeClient
    channel: AsyncRealtimeChannel
    subscribe: asyncio.Task[Any] | None = None
    closing: bool = False

    def gave_up(self) -> bool:
        """The library stopped trying: not connected, and nothing left that would reconnect."""
        if self.client.is_connected:
            return False
        listen = self.client._listen_task
        if listen is not None:
            if not listen.done():
                return False
            if not listen.cancelled():
                listen.exception()  # retrieved: the library's give-up is reported as a Finding
            return True
        sub = self.subscribe
        if sub is not None and sub.done():
            if not sub.cancelled():
                sub.exception()
            return True
        return False

    def listener_died(self) -> bool:
        listen = self.client._listen_task
        return self.client.is_connected and listen is not None and listen.done()

    def why(self) -> str:
        """What ended the library's listen task (or its first connect), for the finding."""
        for task in (self.client._listen_task, self.subscribe):
            if task is not None and task.done():
                if task.cancelled():
                    return "cancelled"
                exc = task.exception()
                if exc is not None:
                    return f"{type(exc).__name__}: {exc}"[:160]
        return "ended"

    async def close(self) -> None:
        self.closing = True
        if self.subscribe is not None and not self.subscribe.done():
            self.subscribe.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.subscribe
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 2.0)


@dataclass
class _Seen:
    seqs: set[int] = field(default_factory=set)

    @property
    def contiguous(self) -> int:
        n = 0
        while n + 1 in self.seqs:
            n += 1
        return n


class RealtimeWatcher:
    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.timing = settings.timing
        self.no_auth = settings.variant == "no-auth"
        self.opts = WatcherOptions.parse(settings.options, settings.timing)
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._generation = 0

    # ----------------------------------------------------------------- session

    def _submit_backoff(self, attempt: int) -> float:
        ceiling: float = min(self.timing.scaled(0.5) * 2**attempt, self.timing.scaled(30.0))
        return ceiling

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        async with phone_client(self.settings.endpoints["api"], self.timing) as http:
            created = await submit_job(http, "/realtime/jobs", request.body(), self._submit_backoff)
            job_id, token = created["job_id"], created["token"]
            yield Submitted(job_id=job_id, token=token)
            if self.no_auth:
                yield Finding(
                    name="no-auth",
                    detail="subscribed without set_auth: RLS hides every row and Realtime sends nothing",
                )
            key = self.opts.supabase_anon_key or created["anon_key"]
            link = await self._open(job_id, key, token)
            seen = _Seen()
            connected = down = False
            attempts = restarts = 0
            resume_due = False
            last_news = time.monotonic()
            next_restart = 0.0
            try:
                while True:
                    try:
                        item: _Item | None = await asyncio.wait_for(self._inbox.get(), self.opts.watchdog_s)
                    except TimeoutError:
                        item = None
                    now = time.monotonic()
                    if isinstance(item, _Row):
                        last_news = now
                        event = self._progress(item.record, job_id)
                        if event is not None and event.seq not in seen.seqs:
                            seen.seqs.add(event.seq)
                            yield event
                            if event.kind in TERMINAL:
                                return
                    elif isinstance(item, _State) and item.generation == link.generation:
                        if item.state == RealtimeSubscribeStates.SUBSCRIBED:
                            if not connected:
                                connected = True
                                yield Connected()
                            if down:
                                yield Reconnected(attempt=attempts)
                                down, attempts, resume_due = False, 0, True
                        elif item.state in (
                            RealtimeSubscribeStates.CHANNEL_ERROR,
                            RealtimeSubscribeStates.TIMED_OUT,
                        ):
                            attempts += 1
                            if not down:
                                down = True
                                yield Disconnected(reason=f"{item.state.value}: {item.error}"[:200])
                        elif item.state == RealtimeSubscribeStates.CLOSED and not link.closing:
                            yield Finding(name="channel-closed", detail=item.error[:200])
                            if not down:
                                down = True
                                attempts += 1
                                yield Disconnected(reason="channel closed by the server")
                            next_restart = 0.0
                            link = await self._restart(link, job_id, key, token)
                    elif isinstance(item, _Live) and item.generation == link.generation:
                        last_news = now
                        if self.no_auth:
                            continue
                        if resume_due:
                            resume_due = False
                            yield Resumed(from_seq=seen.contiguous)
                        async for event in self._refetch(http, job_id, token, seen):
                            yield event
                            if event.kind in TERMINAL:
                                return
                    # the library's silent failure modes
                    if now >= next_restart and (link.gave_up() or link.listener_died()):
                        name = "client-gave-up" if link.gave_up() else "listener-died"
                        yield Finding(
                            name=name, detail=f"{link.why()}; fresh client (restart {restarts + 1})"
                        )
                        if not down:
                            down = True
                            attempts += 1
                            yield Disconnected(reason=name)
                        restarts += 1
                        link = await self._restart(link, job_id, key, token)
                        backoff = min(
                            self.timing.scaled(1.0) * 2 ** min(restarts, 5), self.timing.scaled(30.0)
                        )
                        next_restart = time.monotonic() + max(backoff, 0.05) * random.uniform(0.5, 1.0)
                    # the app-level safety net
                    refetch_s = self.opts.refetch_s
                    if not self.no_auth and refetch_s is not None and now - last_news >= refetch_s:
                        last_news = now
                        found = False
                        async for event in self._refetch(http, job_id, token, seen):
                            if not found:
                                found = True
                                yield Finding(name="refetch-recovered", detail=f"after seq {seen.contiguous}")
                            yield event
                            if event.kind in TERMINAL:
                                return
            finally:
                await link.close()

    # ----------------------------------------------------------------- realtime

    async def _open(self, job_id: str, key: str, token: str) -> _Link:
        self._generation += 1
        generation = self._generation
        base = (self.opts.supabase_url or self.settings.endpoints["realtime"]).rstrip("/")
        client = AsyncRealtimeClient(f"{base}/realtime/v1", token=key, initial_backoff=self.opts.backoff_s)
        if not self.no_auth:
            await client.set_auth(token)
        channel = client.channel(f"job-{job_id}")
        inbox = self._inbox

        def on_row(payload: Any) -> None:
            try:
                record = payload["data"].get("record")
                if isinstance(record, dict):
                    inbox.put_nowait(_Row(record))
            except Exception:  # a raising callback would kill the library's listener
                log.exception("unexpected postgres_changes payload")

        def on_system(payload: Any) -> None:
            try:
                fields = payload if isinstance(payload, dict) else vars(payload)
                if fields.get("status") == "ok" and fields.get("message") == SUBSCRIBED_TO_POSTGRES:
                    inbox.put_nowait(_Live(generation))
            except Exception:
                log.exception("unexpected system payload")

        def on_state(state: RealtimeSubscribeStates, error: Exception | None) -> None:
            try:
                inbox.put_nowait(_State(generation, state, "" if error is None else str(error)))
            except Exception:
                log.exception("subscribe callback failed")

        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert,
            on_row,
            table="job_events",
            schema="public",
            filter=f"job_id=eq.{job_id}",
        )
        channel.on_system(on_system)
        link = _Link(generation, client, channel)
        link.subscribe = asyncio.create_task(channel.subscribe(on_state), name=f"rt-subscribe-{job_id}")
        return link

    async def _restart(self, link: _Link, job_id: str, key: str, token: str) -> _Link:
        await link.close()
        return await self._open(job_id, key, token)

    # ----------------------------------------------------------------- API

    async def _refetch(
        self, http: httpx.AsyncClient, job_id: str, token: str, seen: _Seen
    ) -> AsyncIterator[Progress]:
        """Rows after the last contiguous seq, minus those already shown."""
        try:
            response = await http.get(
                f"/realtime/jobs/{job_id}/events",
                params={"after": seen.contiguous},
                headers={"authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            log.info("refetch failed: %r", exc)
            return
        if response.status_code in (401, 403, 404):
            raise TransportError(f"refetch answered {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            return
        for row in response.json()["events"]:
            event = self._progress(row, job_id)
            if event is not None and event.seq not in seen.seqs:
                seen.seqs.add(event.seq)
                yield event

    @staticmethod
    def _progress(record: dict[str, Any], job_id: str) -> Progress | None:
        try:
            return Progress(
                job_id=str(record["job_id"]),
                seq=int(record["seq"]),
                kind=str(record["kind"]),
                message=str(record["message"]),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("row without job_id/seq/kind/message: %r", record)
            return None
