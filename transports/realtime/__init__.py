"""``realtime``: job rows fanned out off the Postgres WAL through a Supabase-Realtime-compatible server."""

from progressbench.transports.http import CONNECT_TIMER, READ_TIMER
from progressbench.transports.realtime.client import RealtimeWatcher
from progressbench.transports.realtime.config import TIMERS
from progressbench.transports.realtime.server import RealtimeServer
from progressbench.transports.types import Billed, Mode, ServiceSpec, Transport

#: Seed 000, pattern A: a Next.js route on Vercel inserts the row and dispatches in after(); the
#: worker runs the job after its 202 on Cloud Run; Supabase bills messages and peak connections.
BILLING = (
    Billed(
        "api",
        Mode.VERCEL_FUNCTION,
        "api",
        why="a Next.js route on Vercel; its after() dispatch keeps the function running",
    ),
    Billed(
        "worker",
        Mode.CLOUD_RUN_INSTANCE,
        "worker",
        why="the job runs after the 202, so CPU must stay allocated (instance-based)",
    ),
    Billed(
        "supabase",
        Mode.SUPABASE_REALTIME,
        "realtime",
        why="Supabase Realtime: messages and the peak of its own clients' connections, no instance time",
    ),
)

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
    billing={"": BILLING},
    timers=(*TIMERS, CONNECT_TIMER, READ_TIMER),
)

__all__ = ["TRANSPORT", "RealtimeServer", "RealtimeWatcher"]
