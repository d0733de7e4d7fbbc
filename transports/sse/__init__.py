"""``sse-naive`` and ``sse``: the same event stream, owned by the request or by the DB."""

from progressbench.transports.sse.client import TIMERS, NaiveSseWatcher, ResumableSseWatcher
from progressbench.transports.sse.naive import NaiveSseServer
from progressbench.transports.sse.server import ResumableSseServer
from progressbench.transports.types import Transport

NAIVE = Transport(
    name="sse-naive",
    server=NaiveSseServer(),
    client=NaiveSseWatcher,
    package=__name__,
    summary="the streaming request runs the job; a drop kills it; re-POST starts again",
    timers=TIMERS,
)

RESUMABLE = Transport(
    name="sse",
    server=ResumableSseServer(),
    client=ResumableSseWatcher,
    package=__name__,
    variants=frozenset({"browser"}),
    summary="worker runs the job; the stream tails job_events with Last-Event-ID replay",
    timers=TIMERS,
)

__all__ = [
    "NAIVE",
    "RESUMABLE",
    "NaiveSseServer",
    "NaiveSseWatcher",
    "ResumableSseServer",
    "ResumableSseWatcher",
]
