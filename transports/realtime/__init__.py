"""``realtime``: job rows fanned out off the Postgres WAL through a Supabase-Realtime-compatible server.

The registry entry names its server and client (imported on first use).
"""

from progressbench.transports.realtime.config import GATEWAY_ROLE, TIMERS, VARIANTS
from progressbench.transports.timers import CONNECT_TIMER, READ_TIMER
from progressbench.transports.types import Billed, Mode, ServiceSpec, Transport

from progressbench.kit.timers import DISPATCH_ABORT_TIMER

#: Seed 000, pattern A: a Next.js route on Vercel inserts the row and dispatches in after(); the
#: worker runs the job inside the dispatch request the route aborted after 8 s, on Cloud Run, where
#: work after the caller is gone needs CPU always allocated; Supabase bills messages and peak
#: connections.
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
        why="the job runs on after the route's 8 s abort, so CPU must stay allocated (instance-based)",
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
    server_ref="progressbench.transports.realtime.server:RealtimeServer",
    client_ref="progressbench.transports.realtime.client:RealtimeWatcher",
    package=__name__,
    variants=VARIANTS,
    summary=(
        "insert job row, fire-and-forget dispatch (8 s abort) to a worker that runs the job in that "
        "request, worker rows -> WAL -> Supabase Realtime; no retry, no watchdog"
    ),
    context="worker/request",
    # The phone reaches auth, REST and Realtime through one URL (the gateway, as a Supabase project's
    # API gateway does); each cell's chaos proxy sits in front of that gateway.
    services=(
        ServiceSpec(role="realtime", module="progressbench.transports.realtime.service"),
        ServiceSpec(
            role=GATEWAY_ROLE, module="progressbench.transports.realtime.gateway", client_facing=True
        ),
    ),
    migrations=("migrations/002_realtime.sql",),
    grants="grants.toml",
    billing={"": BILLING},
    timers=(*TIMERS, CONNECT_TIMER, READ_TIMER, DISPATCH_ABORT_TIMER),
)

__all__ = ["TRANSPORT"]
