"""Server parts both SSE flavours share: the per-process hub, the tail loop, the response.

:func:`tail` turns a job's committed events after a cursor into
:class:`ServerSentEvent` s (``id:`` = seq, ``event:`` = kind, ``data:`` =
the store row as JSON). It reads the store, then sleeps on the stream's hub
subscription until a ``job_events`` notification for the job, a slow
fallback re-check, or the request deadline. It stops after the terminal
event, at the deadline (the platform's request timeout), when ``stop``
says the producer is gone and nothing new is left, or at once when the job
had already finished when the stream opened and nothing is left after the
cursor (a ``Last-Event-ID`` at or past the terminal seq: issue #13, probe 10;
without this such a stream idled with heartbeats until the deadline).

Heartbeats are sse-starlette's ``ping`` comments; the ``retry:`` hint goes
first on every stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from progressbench.transports.sse.wire import event_data
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse

from progressbench.core.events import TERMINAL
from progressbench.kit.context import ServiceContext
from progressbench.kit.meters import request_waits_on_job
from progressbench.kit.notify import Subscription

#: Server-side knobs, in unscaled seconds (multiplied by the run's time scale).
HEARTBEAT_S = 15.0
RETRY_HINT_S = 2.0
#: Slow safety net in case a notification is lost; LISTEN/NOTIFY does the real work.
FALLBACK_RECHECK_S = 5.0


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment=f"hb {datetime.now().time().isoformat('milliseconds')}")


def response(content: AsyncIterator[ServerSentEvent], heartbeat_s: float) -> EventSourceResponse:
    """The streaming response; the request is metered as held (it stays open for the job, scaled)."""
    request_waits_on_job()
    return EventSourceResponse(
        content,
        ping=heartbeat_s,
        ping_message_factory=_ping,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        send_timeout=None,
    )


def retry_event(seconds: float) -> ServerSentEvent:
    return ServerSentEvent(retry=max(int(seconds * 1000), 1), comment="stream open")


async def tail(
    ctx: ServiceContext,
    sub: Subscription,
    after: int,
    deadline: float,
    *,
    transport: str,
    fallback_s: float,
    stop: Callable[[], bool] = lambda: False,
    finished: bool = False,
) -> AsyncIterator[ServerSentEvent]:
    """Events of ``sub.job_id`` with seq > ``after``, as they are committed (see module doc)."""
    loop = asyncio.get_running_loop()
    cursor = after
    counter = ctx.meters.messages.labels(ctx.meters.service, transport)
    feed = sub.feed
    ticket = feed.ticket() if feed is not None else 0
    while True:
        stopping = stop()
        if feed is not None:
            if stopping:  # the last look must be a read that began after the producer was gone
                ticket = feed.ticket()
            rows = await feed.after(cursor, ticket)
        else:
            rows = await ctx.store.events_after(sub.job_id, cursor)
        for row in rows:
            cursor = row.seq
            counter.inc()
            yield ServerSentEvent(data=event_data(row.as_json()), event=row.kind, id=str(row.seq))
            if row.kind in TERMINAL:
                return
        if rows:
            continue
        if stopping or finished:
            return
        left = deadline - loop.time()
        if left <= 0:
            return
        await sub.wait(min(left, fallback_s))
        ticket = feed.ticket() if feed is not None else 0  # woken or timed out: look again at the store
