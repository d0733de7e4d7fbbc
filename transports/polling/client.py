"""Client face of ``polling``: poll the status URL until the job's state is final.

``polling`` reads the job's current state (``GET href``): each answer that
shows a step not seen yet is one progress event; a step the job went through
between two answers is never seen (``coalesced``, by design). Variant
``log`` (``polling:log``) reads the event log after its cursor
(``GET href?after=N``) and sees every step.

Pacing: the larger of the configured poll interval and the server's
``Retry-After``, waited after each answer, less the part of the poll's round
trip the time scale stretched (:func:`next_wait`): the round trip is real time,
so at scale 0.1 a 45 ms answer would otherwise stand for 450 ms and the phone
would poll a third less often than it does in the world the run stands for.
Errors (connection failures, timeouts, 429/5xx) back off exponentially
with jitter up to 30 s (scaled), never shorter than a 429/5xx's
``Retry-After``, and are reported as one ``Disconnected`` per outage; the
first good answer afterwards is a ``Reconnected`` plus a ``Resumed`` from the
cursor (policy ``POLL_CURSOR`` of :mod:`progressbench.core.reconnect`).
Nothing needs replaying: the next poll reads the truth (the state, or the
log after the cursor). A 4xx other than 429
is final (bad token, unknown job) and raises
:class:`~progressbench.core.errors.TransportError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from functools import partial
from typing import Any

import httpx
from progressbench.transports.canary import probe_get
from progressbench.transports.http import access_token, phone_client, submit_job
from progressbench.transports.redial import Dropped, redial
from progressbench.transports.types import ClientSettings, JobRequest, ProbeReport

from progressbench.core.errors import TransportError
from progressbench.core.events import Alive, ClientEvent, Progress, Submitted
from progressbench.core.reconnect import POLL_CURSOR, Backoff, Reconnector


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else 0.0


def next_wait(wait_s: float, round_trip_s: float, time_scale: float) -> float:
    """Seconds to sleep before the next poll, so that the period is the real one, compressed.

    In the world the run stands for, a phone polls every ``wait + round trip``
    (it waits after each answer). The run compresses the wait (``wait_s`` is
    already scaled) but not the round trip, so the period on the testbed's
    clock should be ``wait_s + round_trip_s × time_scale``: the round trip's
    excess, ``round_trip_s × (1 − time_scale)``, comes off the wait (never
    below 0; a round trip longer than that is a distortion of the run). At
    scale 1 nothing changes.
    """
    excess = max(round_trip_s, 0.0) * max(1.0 - time_scale, 0.0)
    return max(wait_s - excess, 0.0)


class PollingWatcher:
    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        timing = settings.timing
        self.interval = timing.scaled(timing.poll_interval_s)
        # the first retry waits two intervals
        self.backoff = Backoff(initial=2.0 * self.interval, ceiling=timing.scaled(30.0), jitter=0.5)
        #: The state poller sees only the current state: its missed steps are coalesced, not lost.
        self.log = settings.variant == "log"
        #: ``in-instance``: the job runs on the API instance that accepted it (same status URL).
        self.create_path = (
            "/polling/in-instance/jobs" if settings.variant == "in-instance" else "/polling/jobs"
        )
        self.coalesces = not self.log

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        """The canary: the victim's status URL with the canary's access token, and with none."""
        report = ProbeReport()
        async with phone_client(self.settings.endpoints["api"], self.settings.timing) as http:
            token = await access_token(http, phone, self.backoff.delay)
            path = f"/polling/jobs/{victim_job_id}"
            await probe_get(http, report, "status-url", path, victim_job_id, token)
            await probe_get(http, report, "status-url-no-token", path, victim_job_id, None)
        return report

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        base = self.settings.endpoints["api"]
        async with phone_client(base, self.settings.timing) as http:
            created = await submit_job(
                http,
                self.create_path,
                request.body(),
                self.backoff.delay,
                phone=request.owner,
                timing=self.settings.timing,
            )
            for finding in created.findings():
                yield finding
            yield Submitted(job_id=created["job_id"], token=created["token"])
            headers = {"authorization": f"Bearer {created['token']}"}
            state = Reconnector(POLL_CURSOR)
            attempt = partial(self._polls, http, created["href"], headers, state)
            async for event in redial(state, self.backoff.delay, attempt):
                yield event

    async def _polls(
        self, http: httpx.AsyncClient, href: str, headers: dict[str, str], state: Reconnector
    ) -> AsyncGenerator[ClientEvent, None]:
        """Poll after the cursor until a poll fails; ``headers`` keep the last ETag across outages."""
        while True:
            sent = time.monotonic()
            response = await self._poll(http, href, headers, state.cursor)
            for event in state.up(time.monotonic()):
                yield event
            if response.status_code == 304:
                yield Alive()
            elif self.log:
                for row in response.json()["events"]:
                    yield state.receive(_progress(row), "poll").event
            else:
                body = response.json()
                step = body.get("step")
                if step is None or state.book.seen(int(step["seq"])):
                    yield Alive()  # an answer, nothing new to show
                else:
                    yield state.receive(_progress({"job_id": body["job_id"], **step}), "poll").event
            hint = _retry_after(response.headers.get("retry-after"))
            wait = max(self.interval, hint or 0.0)
            # the round trip and the handling of its answer: real time, not compressed
            round_trip = time.monotonic() - sent
            await asyncio.sleep(next_wait(wait, round_trip, self.settings.timing.time_scale))

    async def _poll(
        self, http: httpx.AsyncClient, href: str, headers: dict[str, str], after: int
    ) -> httpx.Response:
        """One 200 or 304; a failure worth retrying is :class:`Dropped`, anything else final."""
        params = {"after": after} if self.log else None
        try:
            response = await http.get(href, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise Dropped(type(exc).__name__) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise Dropped(f"http {status}", retry_after=_retry_after(response.headers.get("retry-after")))
        if status not in (200, 304):
            raise TransportError(f"status URL answered {status}: {response.text[:200]}")
        etag = response.headers.get("etag")
        if status == 200 and etag:
            headers["if-none-match"] = etag
        return response


def _progress(row: dict[str, Any]) -> Progress:
    return Progress(job_id=row["job_id"], seq=row["seq"], kind=row["kind"], message=row["message"])
