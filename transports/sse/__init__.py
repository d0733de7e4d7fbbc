"""``sse-naive`` and ``sse``: the same event stream, owned by the request or by the DB.

The registry entries name their servers and clients (imported on first use):
importing this package imports no web framework and no HTTP client.
"""

from collections.abc import Mapping

from progressbench.transports.sse.timers import NAIVE_TIMERS, TIMERS
from progressbench.transports.types import Billed, Mode, Transport

#: Seed 000: a Next.js route on Vercel relays the stream of a Cloud Run worker that runs the job
#: inside the request: the route is a Vercel function held for the whole stream, the worker a
#: request in flight on Cloud Run ("billed for the whole request").
NAIVE_BILLING = (
    Billed("api", Mode.VERCEL_FUNCTION, "api", why="the streaming route relays the worker's stream"),
    Billed("worker", Mode.CLOUD_RUN_REQUEST, "worker", why="the job runs inside the streaming request"),
)
#: The resumable stream is served by a Cloud Run service; the job runs on a worker after its 202.
RESUMABLE_BILLING = (
    Billed("api", Mode.CLOUD_RUN_REQUEST, "api", why="an open stream is a request in flight on Cloud Run"),
    Billed(
        "worker",
        Mode.CLOUD_RUN_INSTANCE,
        "worker",
        why="the job runs after the 202, so CPU must stay allocated (instance-based)",
    ),
)


def resumable_needs(variant: str | None, options: Mapping[str, str]) -> str | None:
    """``sse:browser`` with any browser phone needs Chromium and playwright on this machine."""
    if variant != "browser" or options.get("browser_phones", "") == "0":
        return None
    # Here, not at the top: the browser glue imports the stream client.
    from progressbench.transports.sse import browser

    return browser.missing()


NAIVE = Transport(
    name="sse-naive",
    server_ref="progressbench.transports.sse.naive:NaiveSseServer",
    client_ref="progressbench.transports.sse.client:NaiveSseWatcher",
    package=__name__,
    variants=frozenset({"cancel"}),
    summary="a worker runs the job inside the streaming request; a drop means a new job from step 1",
    context="worker/request",
    billing={"": NAIVE_BILLING},
    timers=(*TIMERS, *NAIVE_TIMERS),
)

RESUMABLE = Transport(
    name="sse",
    server_ref="progressbench.transports.sse.server:ResumableSseServer",
    client_ref="progressbench.transports.sse.phone:ResumableClient",
    package=__name__,
    variants=frozenset({"browser"}),
    needs=resumable_needs,
    summary="worker runs the job; the stream tails job_events with Last-Event-ID replay",
    lease_watchdog=True,
    billing={"": RESUMABLE_BILLING},
    timers=TIMERS,
)

__all__ = ["NAIVE", "RESUMABLE"]
