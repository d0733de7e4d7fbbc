"""One ``LISTEN job_events`` connection per API process, fanned out to every open stream and cache.

The store announces each committed event with ``pg_notify('job_events',
'["<job id>", <seq>]')``. A reader (the SSE channel of a job, which serves
every stream of it) :meth:`NotifyHub.subscribe` s to its job *before*
reading the store, then sleeps on its :class:`Subscription` until a
notification for that job (or a slow fallback re-check) wakes it, so nothing
committed between the read and the wait is missed and nobody busy-polls.

Lifecycle: the listener starts lazily with the first subscriber and runs
until the service's shutdown event is set (then it closes its connection).
If the connection drops it reconnects with backoff and wakes every
subscriber once, since notifications sent meanwhile are gone.

Besides per-job subscriptions (SSE streams), :meth:`NotifyHub.watch_all`
registers a :class:`ChangeWatcher` told of every job's change and of every
gap in the feed (``ready`` cleared), e.g. the polling server's ETag cache,
which may answer from memory only while nothing can have been missed.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import psycopg

from progressbench.kit.context import ServiceContext
from progressbench.kit.executor import JobPool
from progressbench.kit.store import NOTIFY_CHANNEL, EventRow

log = logging.getLogger(__name__)


Reader = Callable[[uuid.UUID, int], Awaitable[list[EventRow]]]


def _seq(row: EventRow) -> int:
    return row.seq


class JobFeed:
    """One job's events as read for every stream of it in this process: one store read per change.

    A thousand streams on a hundred jobs each woken by a notification used
    to read the store a thousand times; now the first stream to ask reads
    the events after the last one the feed holds, and the others take theirs
    from memory. Freshness is by ticket: a stream takes a :meth:`ticket`
    when it learns it must look (woken, or its fallback timer) and needs a
    read that *began* after it; any stream's read satisfies every ticket
    older than it. Reads run one at a time (a lock), so a read that began is
    finished when the next caller looks. A stream behind the feed's window
    (a replay from an old ``Last-Event-ID``) reads from its cursor, which
    widens the window for everyone.
    """

    def __init__(self, job_id: uuid.UUID, read: Reader) -> None:
        self.job_id = job_id
        self._read = read
        self._lock = asyncio.Lock()
        self._base: int | None = None  # the window holds every event after this seq, as of the last read
        self._rows: list[EventRow] = []
        self._started = 0  # reads begun
        self.reads = 0

    def ticket(self) -> int:
        return self._started

    @property
    def window_end(self) -> int | None:
        """The seq up to which the window holds every event (None before the first read)."""
        if self._base is None:
            return None
        return self._rows[-1].seq if self._rows else self._base

    async def after(self, cursor: int, ticket: int) -> list[EventRow]:
        """The job's events after ``cursor``, from a read that began after ``ticket`` was taken."""
        async with self._lock:
            behind = self._base is None or cursor < self._base
            if behind or self._started <= ticket:
                self._started += 1
                start = cursor if behind else (self._rows[-1].seq if self._rows else self._base)
                assert start is not None
                rows = await self._read(self.job_id, start)
                self.reads += 1
                if behind:
                    self._base, self._rows = start, rows
                else:
                    self._rows.extend(rows)
            return self._slice(cursor)

    def cached_after(self, cursor: int) -> list[EventRow] | None:
        """The events after ``cursor`` the feed already holds, without a read; None when the window
        does not reach back to ``cursor`` (or no read was made yet): the caller must :meth:`after`.

        Only as fresh as the last read: a caller uses it when every later change is certain to
        reach it through a read that has yet to begin (a stream already attached to a woken feed).
        """
        if self._base is None or cursor < self._base:
            return None
        return self._slice(cursor)

    def _slice(self, cursor: int) -> list[EventRow]:
        return self._rows[bisect.bisect_right(self._rows, cursor, key=_seq) :]


class Subscription:
    """A wake-up flag for one job (an SSE job channel's), and the job's shared feed."""

    def __init__(self, job_id: uuid.UUID, feed: JobFeed | None = None) -> None:
        self.job_id = job_id
        self.feed = feed
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if woken (a notification arrived since the last wait), False on timeout."""
        if timeout > 0 and not self._event.is_set():
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps the wait in a task of its
            # own, one more task and one more loop turn per wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._event.wait()
        woken = self._event.is_set()
        self._event.clear()
        return woken


class ChangeWatcher(Protocol):
    """Told of every job's change, and of every stretch in which changes may have been missed."""

    def changed(self, job_id: uuid.UUID) -> None: ...

    def missed(self) -> None: ...


class NotifyHub:
    def __init__(
        self, database_url: str, shutdown: asyncio.Event, retry_s: float = 0.5, read: Reader | None = None
    ) -> None:
        self._url = database_url
        self._read = read
        self._feeds: dict[uuid.UUID, JobFeed] = {}
        self._shutdown = shutdown
        self._retry_s = retry_s
        self._subs: dict[uuid.UUID, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._watchers: list[ChangeWatcher] = []
        self.ready = asyncio.Event()
        self.notifications = 0

    @property
    def streams(self) -> int:
        return sum(len(s) for s in self._subs.values())

    @contextlib.contextmanager
    def subscribe(self, job_id: uuid.UUID) -> Iterator[Subscription]:
        sub = self.join(job_id)
        try:
            yield sub
        finally:
            self.leave(sub)

    def join(self, job_id: uuid.UUID) -> Subscription:
        """Subscribe to ``job_id`` until :meth:`leave` (for an owner that outlives one block of code)."""
        self._ensure_running()
        feed = None
        if self._read is not None:
            feed = self._feeds.get(job_id) or self._feeds.setdefault(job_id, JobFeed(job_id, self._read))
        sub = Subscription(job_id, feed)
        self._subs.setdefault(job_id, set()).add(sub)
        return sub

    def leave(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.job_id]
                self._feeds.pop(sub.job_id, None)

    def watch_all(self, watcher: ChangeWatcher) -> None:
        """Tell ``watcher`` of every change from now on (and start listening)."""
        self._watchers.append(watcher)
        self._ensure_running()

    def start(self) -> None:
        """Listen now rather than at the first subscriber (a cache needs the feed before it trusts)."""
        self._ensure_running()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="job-notify-hub")

    def _dispatch(self, payload: str) -> None:
        try:
            raw_id, _seq = json.loads(payload)
            job_id = uuid.UUID(str(raw_id))
        except (ValueError, TypeError):
            log.warning("ignoring malformed %s payload %r", NOTIFY_CHANNEL, payload[:80])
            return
        self.notifications += 1
        for watcher in self._watchers:
            watcher.changed(job_id)
        for sub in self._subs.get(job_id, ()):
            sub.wake()

    def _wake_all(self) -> None:
        for watcher in self._watchers:
            watcher.missed()
        for subs in self._subs.values():
            for sub in subs:
                sub.wake()

    async def _run(self) -> None:
        stop = asyncio.create_task(self._shutdown.wait())
        try:
            while not self._shutdown.is_set():
                try:
                    await self._listen(stop)
                except (psycopg.Error, OSError) as exc:
                    log.warning("notify listener lost its connection: %r", exc)
                self.ready.clear()
                self._wake_all()
                if not self._shutdown.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stop), self._retry_s)
        finally:
            stop.cancel()

    async def _listen(self, stop: asyncio.Task[bool]) -> None:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        try:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.ready.set()
            self._wake_all()  # anything committed before LISTEN took effect
            gen = conn.notifies()
            while True:
                nxt = asyncio.ensure_future(anext(gen))
                done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, psycopg.Error):
                        await nxt
                    return
                self._dispatch(nxt.result().payload)
        finally:
            await conn.close()


_HUBS: weakref.WeakKeyDictionary[JobPool, NotifyHub] = weakref.WeakKeyDictionary()


def hub_for(ctx: ServiceContext) -> NotifyHub:
    """The one listener of this service process (keyed by its job pool, which lives as long)."""
    hub = _HUBS.get(ctx.jobs)
    if hub is None:
        hub = NotifyHub(ctx.config.database_url, ctx.jobs.shutdown, read=ctx.store.events_after)
        _HUBS[ctx.jobs] = hub
    return hub
