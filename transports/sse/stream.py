"""The resumable stream's response: one open ``text/event-stream`` fed by its job's channel.

:class:`JobStream` is a plain ASGI response. It sends the headers, attaches
a :class:`~progressbench.transports.sse.fanout.Sink` to the job's channel,
writes the ``retry:`` hint and the replay after the cursor as its first
chunk, then writes whatever the channel pushes (events, heartbeats) until
the sink is done: after the terminal event, at the deadline (the platform's
request timeout), when the client goes away, on the service's shutdown, or
at once when the job had already finished when the stream opened (a
``Last-Event-ID`` at or past the terminal seq: issue #13, probe 10; without
this such a stream idled with heartbeats until the deadline). It ends with
a clean end of body either way, and the phone reconnects with
``Last-Event-ID``.

Per stream this is the request's own task, one small task waiting for the
client's disconnect, a timer for the deadline and a :class:`Sink`: the
heartbeats and the reads are the channel's, shared by every stream of the
job (sse-starlette ran four tasks per stream, a per-stream ping among them).
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid

from progressbench.transports.sse.fanout import Fanout, Sink
from sse_starlette.event import ServerSentEvent
from starlette.types import Receive, Scope, Send

from progressbench.kit.meters import request_waits_on_job

#: Server-side knobs, in unscaled seconds (multiplied by the run's time scale).
HEARTBEAT_S = 15.0
RETRY_HINT_S = 2.0
#: Slow safety net in case a notification is lost; LISTEN/NOTIFY does the real work.
FALLBACK_RECHECK_S = 5.0

#: Every stream's head, one shared tuple (a middleware that adds headers copies them first).
HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
)


#: The context the deadline timer and the disconnect watcher run in, one for every stream: neither
#: reads or sets a context variable, and a copy of the request's (what asyncio makes by default)
#: would be two more objects per stream for the collector to walk. asyncio never runs two steps
#: at once, so sharing one context cannot enter it twice.
_DETACHED = contextvars.Context()


def retry_hint(seconds: float) -> bytes:
    """The first bytes of every stream: the reconnection delay a browser's ``EventSource`` uses."""
    return ServerSentEvent(retry=max(int(seconds * 1000), 1), comment="stream open").encode()


async def _until_disconnect(receive: Receive, sink: Sink) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    sink.finish()


class JobStream:
    """One open stream of ``job_id`` after ``cursor``; ``deadline`` is on the loop's clock and
    ``prelude`` (the :func:`retry_hint`) goes first. The job's channel is joined only when the
    response runs, so a response that never runs leaves nothing behind. A plain ASGI app (no
    framework response: a stream has no body to measure), with slots: a process holds a
    thousand of these for minutes."""

    __slots__ = ("_cursor", "_deadline", "_fanout", "_finished", "_job_id", "_prelude")

    def __init__(
        self, fanout: Fanout, job_id: uuid.UUID, cursor: int, deadline: float, prelude: bytes, finished: bool
    ) -> None:
        self._fanout = fanout
        self._job_id = job_id
        self._cursor = cursor
        self._deadline = deadline
        self._prelude = prelude
        self._finished = finished
        # The request is metered as held: it stays open for the job (its duration follows the scale).
        request_waits_on_job()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        if scope.get("method") == "HEAD":  # headers as for GET, no stream (it would never end)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        loop = asyncio.get_running_loop()
        sink = Sink(self._cursor)
        channel = self._fanout.channel(self._job_id)
        channel.attach(sink)
        timer = loop.call_at(self._deadline, sink.finish, context=_DETACHED)
        watch = loop.create_task(_until_disconnect(receive, sink), context=_DETACHED)
        try:
            # The first chunk is not kept in a local: it is this stream's alone, and the stream lives long.
            replay = await channel.replay(sink, self._finished)
            await send({"type": "http.response.body", "body": self._prelude + replay, "more_body": True})
            del replay
            while True:
                waiter = sink.pending()
                if waiter is not None:
                    await waiter
                data = sink.take()
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                if sink.done:
                    break
        finally:
            timer.cancel()
            watch.cancel()
            channel.detach(sink)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
