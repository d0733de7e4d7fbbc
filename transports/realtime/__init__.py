"""``realtime``: job rows fanned out off the Postgres WAL through a Supabase-Realtime-compatible server."""

from progressbench.transports.http import CONNECT_TIMER, READ_TIMER
from progressbench.transports.realtime.client import RealtimeWatcher
from progressbench.transports.realtime.config import TIMERS
from progressbench.transports.realtime.server import VARIANTS, RealtimeServer
from progressbench.transports.types import ServiceSpec, Transport

from progressbench.kit.context import DISPATCH_ABORT_TIMER

TRANSPORT = Transport(
    name="realtime",
    server=RealtimeServer(),
    client=RealtimeWatcher,
    package=__name__,
    variants=VARIANTS,
    summary=(
        "insert job row, fire-and-forget dispatch (8 s abort) to a worker that runs the job in that "
        "request, worker rows -> WAL -> Supabase Realtime; no retry, no watchdog"
    ),
    context="worker/request",
    services=(
        ServiceSpec(role="realtime", module="progressbench.transports.realtime.service", client_facing=True),
    ),
    migrations=("migrations/002_realtime.sql",),
    timers=(*TIMERS, CONNECT_TIMER, READ_TIMER, DISPATCH_ABORT_TIMER),
)

__all__ = ["TRANSPORT", "RealtimeServer", "RealtimeWatcher"]
