"""``sse-naive`` and ``sse``: the same event stream, owned by the request or by the DB."""

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager

from progressbench.transports.sse import browser
from progressbench.transports.sse.browser import BrowserSseWatcher
from progressbench.transports.sse.client import TIMERS, NaiveSseWatcher, ResumableSseWatcher
from progressbench.transports.sse.naive import TIMERS as NAIVE_TIMERS
from progressbench.transports.sse.naive import NaiveSseServer
from progressbench.transports.sse.server import ResumableSseServer
from progressbench.transports.types import Billed, ClientSettings, JobRequest, Mode, ProbeReport, Transport

from progressbench.core.events import ClientEvent

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


class ResumableClient:
    """``sse``'s client face: the Python watcher; for the first ``browser_phones`` phones of an
    ``sse:browser`` cell, a page in headless Chromium (:mod:`~progressbench.transports.sse.browser`)."""

    __slots__ = ("watcher",)

    def __init__(self, settings: ClientSettings) -> None:
        self.watcher: ResumableSseWatcher | BrowserSseWatcher
        if settings.variant == "browser" and browser.is_browser_phone(settings):
            self.watcher = BrowserSseWatcher(settings)
        else:
            self.watcher = ResumableSseWatcher(settings)

    def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        return self.watcher.session(request)

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        return await self.watcher.probe(phone, victim_job_id, window_s)

    def prepared(self, phone: str) -> AbstractAsyncContextManager[None]:
        """A page loads before its session's clock starts; a Python phone has nothing to load."""
        if isinstance(self.watcher, BrowserSseWatcher):
            return self.watcher.prepared(phone)
        return contextlib.nullcontext()


def resumable_needs(variant: str | None, options: Mapping[str, str]) -> str | None:
    """``sse:browser`` with any browser phone needs Chromium and playwright on this machine."""
    if variant != "browser" or options.get("browser_phones", "") == "0":
        return None
    return browser.missing()


NAIVE = Transport(
    name="sse-naive",
    server=NaiveSseServer(),
    client=NaiveSseWatcher,
    package=__name__,
    variants=frozenset({"cancel"}),
    summary="a worker runs the job inside the streaming request; a drop means a new job from step 1",
    context="worker/request",
    billing={"": NAIVE_BILLING},
    timers=(*TIMERS, *NAIVE_TIMERS),
)

RESUMABLE = Transport(
    name="sse",
    server=ResumableSseServer(),
    client=ResumableClient,
    package=__name__,
    variants=frozenset({"browser"}),
    needs=resumable_needs,
    summary="worker runs the job; the stream tails job_events with Last-Event-ID replay",
    lease_watchdog=True,
    billing={"": RESUMABLE_BILLING},
    timers=TIMERS,
)

__all__ = [
    "NAIVE",
    "RESUMABLE",
    "BrowserSseWatcher",
    "NaiveSseServer",
    "NaiveSseWatcher",
    "ResumableClient",
    "ResumableSseServer",
    "ResumableSseWatcher",
]
