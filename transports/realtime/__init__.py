"""``realtime``: job rows fanned out off the Postgres WAL through a Supabase-Realtime-compatible server."""

from progressbench.transports.http import CONNECT_TIMER, READ_TIMER
from progressbench.transports.realtime.client import RealtimeWatcher
from progressbench.transports.realtime.config import TIMERS
from progressbench.transports.realtime.server import RealtimeServer
from progressbench.transports.types import ServiceSpec, Transport

TRANSPORT = Transport(
    name="realtime",
    server=RealtimeServer(),
    client=RealtimeWatcher,
    package=__name__,
    variants=frozenset({"no-auth"}),
    summary="insert job row, fire-and-forget dispatch (8 s abort), worker rows -> WAL -> Supabase Realtime",
    services=(
        ServiceSpec(role="realtime", module="progressbench.transports.realtime.service", client_facing=True),
    ),
    migrations=("migrations/002_realtime.sql",),
    timers=(*TIMERS, CONNECT_TIMER, READ_TIMER),
)

__all__ = ["TRANSPORT", "RealtimeServer", "RealtimeWatcher"]
