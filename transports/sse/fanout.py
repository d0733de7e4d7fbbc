"""One pump per job per API process: one store read per change, each event encoded once, the same
bytes handed to every open stream of the job.

Before this, each stream was its own reader: a notification woke every
stream of the job, each queued on the job's feed lock (one loop turn
apiece), re-encoded the same rows into its own ``ServerSentEvent`` and
wrote them through sse-starlette's four tasks per stream. At 1,000 streams
the tail latency was the queue and the memory was the tasks.

Here a :class:`JobChannel` owns the job's hub subscription and its
:class:`~progressbench.kit.notify.JobFeed`. Its pump (one task per job, not
per stream) sleeps on the subscription; woken by a notification or by the
slow fallback re-check it reads once, encodes each new event once
(:meth:`JobChannel.wire`) and :meth:`Sink.push` es the bytes to every live
stream (a list append and a future resolved: no await per stream). It also
beats the heartbeat for all of them at once. Each stream's own request task
writes what was pushed to it, so a slow phone only ever delays itself.

Attaching a stream without a gap: the sink joins the channel first (the
channel's subscription is already in place), then replays from the feed.
While the hub is listening, the window the feed holds is enough: anything
newer is announced and the pump's next read, which begins after the
announcement, pushes it to every live sink. A stream whose cursor is before
the window, a job already finished when the stream opened (its terminal
event must be in the replay), or a hub that is reconnecting, reads instead
(:meth:`JobFeed.after` with a fresh ticket). The sink goes live in the same
step the replay is computed, so no read can land between the two.

Lifecycle: the channel lives while it has sinks; the last one to leave
closes it (the pump exits at its next wake-up, the subscription is
released). On the service's shutdown every sink is finished, so streams end
cleanly (the phones reconnect with ``Last-Event-ID`` elsewhere) instead of
holding the drain.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from datetime import datetime
from typing import Protocol

from progressbench.transports.sse.wire import event_data
from sse_starlette.event import ServerSentEvent

from progressbench.core.events import TERMINAL
from progressbench.kit.notify import JobFeed, Subscription
from progressbench.kit.store import EventRow

log = logging.getLogger(__name__)


def encode_event(row: EventRow) -> bytes:
    """One committed event on the wire: ``id:`` = seq, ``event:`` = kind, ``data:`` = the row as JSON."""
    return ServerSentEvent(data=event_data(row.as_json()), event=row.kind, id=str(row.seq)).encode()


def heartbeat() -> bytes:
    """A heartbeat comment carrying the server's clock (a reader can see how stale a socket is)."""
    return ServerSentEvent(comment=f"hb {datetime.now().time().isoformat('milliseconds')}").encode()


class Counter(Protocol):
    """What the channel needs of a Prometheus counter."""

    def inc(self, amount: float = 1) -> None: ...


class Hub(Protocol):
    """What the channels need of the process's :class:`~progressbench.kit.notify.NotifyHub`."""

    @property
    def ready(self) -> asyncio.Event: ...

    def join(self, job_id: uuid.UUID) -> Subscription: ...

    def leave(self, sub: Subscription) -> None: ...


class Sink:
    """One open stream as its job's channel sees it: a cursor, an outbox and a wake-up.

    ``live`` once its replay is written into the outbox (the pump pushes only
    to live sinks); ``done`` once nothing more will be pushed (terminal event,
    deadline, disconnect, shutdown): the stream writes what is left and ends.
    """

    __slots__ = ("_outbox", "_waiter", "cursor", "done", "live")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self.live = False
        self.done = False
        self._outbox: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None

    def push(self, data: bytes) -> None:
        self._outbox.append(data)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def take(self) -> bytes:
        """Everything pushed since the last take, as one write."""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def pending(self) -> asyncio.Future[None] | None:
        """A future the next push or finish resolves; None if something is already there (or done).

        The stream awaits this future itself, not a coroutine around it: a stream waits between
        every two events, and each thing made per wait lives until the next event, long enough
        for the collector's young generations to move it on to the old one.
        """
        if self._outbox or self.done:
            return None
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class JobChannel:
    """Every open stream of one job in this process, fed by one pump (see module doc)."""

    def __init__(self, fanout: Fanout, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self._fanout = fanout
        self._sub = fanout.hub.join(job_id)
        if self._sub.feed is None:  # pragma: no cover - hub_for always gives the hub a reader
            raise RuntimeError("the notify hub has no store reader: streams need its JobFeed")
        self.feed: JobFeed = self._sub.feed
        self._sinks: set[Sink] = set()
        self._wire: dict[int, bytes] = {}
        self._closed = False
        # The pump outlives the request that opened the first stream: it must not carry that
        # request's context (its metered invocation) along.
        self._task = asyncio.get_running_loop().create_task(
            self._pump(), name=f"sse-pump-{job_id}", context=contextvars.Context()
        )

    @property
    def streams(self) -> int:
        return len(self._sinks)

    def wire(self, row: EventRow) -> bytes:
        """The event's bytes, encoded once for every stream that will ever carry it."""
        data = self._wire.get(row.seq)
        if data is None:
            data = self._wire[row.seq] = encode_event(row)
        return data

    def attach(self, sink: Sink) -> None:
        self._sinks.add(sink)

    def detach(self, sink: Sink) -> None:
        self._sinks.discard(sink)
        if not self._sinks and not self._closed:
            self._closed = True
            self._fanout.closed(self)
            self._fanout.hub.leave(self._sub)
            self._sub.wake()  # the pump sees it is closed and ends

    async def replay(self, sink: Sink, finished: bool) -> bytes:
        """The attached ``sink``'s events after its cursor, as bytes; the sink is live on return.

        ``finished``: the job had ended when the stream opened: the replay must be read (its
        terminal event may not be in the window yet) and the stream ends after it.
        """
        rows = None
        if not finished and self._fanout.hub.ready.is_set():
            rows = self.feed.cached_after(sink.cursor)
        if rows is None:
            rows = await self.feed.after(sink.cursor, self.feed.ticket())
        # No await from here on: the sink is live before any other read can complete.
        data = b"".join(self.wire(r) for r in rows)
        if rows:
            sink.cursor = rows[-1].seq
            self._fanout.messages.inc(len(rows))
        if finished or any(r.kind in TERMINAL for r in rows) or self._fanout.stopping:
            sink.done = True
        sink.live = True
        return data

    def finish_all(self) -> None:
        for sink in self._sinks:
            sink.finish()

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        fanout = self._fanout
        now = loop.time()
        next_beat, next_check = now + fanout.heartbeat_s, now + fanout.fallback_s
        while not self._closed:
            woken = await self._sub.wait(min(next_beat, next_check) - loop.time())
            if self._closed:
                return
            if woken or loop.time() >= next_check:
                try:
                    await self._refresh()
                except Exception:  # a failed read ends the streams; the phones resume with a new channel
                    log.exception("sse pump of job %s: store read failed", self.job_id)
                    fanout.closed(self)
                    self.finish_all()
                    return
                next_check = loop.time() + fanout.fallback_s
            if loop.time() >= next_beat:
                beat = heartbeat()
                for sink in self._sinks:
                    if sink.live and not sink.done:
                        sink.push(beat)
                next_beat = loop.time() + fanout.heartbeat_s

    async def _refresh(self) -> None:
        """One read (from the oldest live cursor), then each live sink gets the bytes it lacks."""
        live = [s.cursor for s in self._sinks if s.live and not s.done]
        if live:
            cursor = min(live)
        elif self.feed.window_end is not None:
            cursor = self.feed.window_end  # only streams still replaying: keep the window current
        elif self._sinks:
            cursor = min(s.cursor for s in self._sinks)  # a replay's read may predate this change
        else:
            return
        rows = await self.feed.after(cursor, self.feed.ticket())
        if not rows:
            return
        # Sinks almost always share one cursor: one join per distinct cursor, not per sink.
        batches: dict[int, tuple[bytes, int, bool, int]] = {}
        for sink in self._sinks:
            if not sink.live or sink.done:
                continue
            batch = batches.get(sink.cursor)
            if batch is None:
                fresh = [r for r in rows if r.seq > sink.cursor]
                batch = (
                    b"".join(self.wire(r) for r in fresh),
                    fresh[-1].seq if fresh else sink.cursor,
                    any(r.kind in TERMINAL for r in fresh),
                    len(fresh),
                )
                batches[sink.cursor] = batch
            data, last, terminal, count = batch
            if count:
                sink.cursor = last
                sink.push(data)
                self._fanout.messages.inc(count)
            if terminal:
                sink.finish()


class Fanout:
    """The channels of one API process, by job (see module doc); times are scaled seconds."""

    def __init__(
        self,
        hub: Hub,
        shutdown: asyncio.Event,
        messages: Counter,
        *,
        heartbeat_s: float,
        fallback_s: float,
    ) -> None:
        self.hub = hub
        self.messages = messages
        self.heartbeat_s = heartbeat_s
        self.fallback_s = fallback_s
        self._shutdown = shutdown
        self._channels: dict[uuid.UUID, JobChannel] = {}
        self._watch: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._shutdown.is_set()

    @property
    def streams(self) -> int:
        return sum(c.streams for c in self._channels.values())

    def channel(self, job_id: uuid.UUID) -> JobChannel:
        """The job's channel, opened (and subscribed) now if it has no stream yet."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(
                self._end_on_shutdown(), name="sse-fanout-shutdown", context=contextvars.Context()
            )
        found = self._channels.get(job_id)
        if found is None:
            found = self._channels[job_id] = JobChannel(self, job_id)
        return found

    def closed(self, channel: JobChannel) -> None:
        if self._channels.get(channel.job_id) is channel:
            del self._channels[channel.job_id]

    async def _end_on_shutdown(self) -> None:
        await self._shutdown.wait()
        for channel in list(self._channels.values()):
            channel.finish_all()
