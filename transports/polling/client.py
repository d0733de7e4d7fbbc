"""Client face of ``polling``: poll the status URL until the terminal event.

Pacing: the larger of the configured poll interval and the server's
``Retry-After``. Errors (connection failures, timeouts, 429/5xx) back off
exponentially with jitter up to 30 s (scaled) and are reported as one
``Disconnected`` per outage; the first good answer afterwards is a
``Reconnected`` plus a ``Resumed`` from the cursor. Nothing needs replaying:
the next poll reads the truth. A 4xx other than 429 is final (bad token,
unknown job) and raises :class:`~progressbench.core.errors.TransportError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
from progressbench.transports.http import phone_client, submit_job
from progressbench.transports.types import ClientSettings, JobRequest

from progressbench.core.errors import TransportError
from progressbench.core.events import (
    TERMINAL,
    Alive,
    ClientEvent,
    Connected,
    Disconnected,
    Progress,
    Reconnected,
    Resumed,
    Submitted,
)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else 0.0


class PollingWatcher:
    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        timing = settings.timing
        self.interval = timing.scaled(timing.poll_interval_s)
        self.max_backoff = timing.scaled(30.0)

    def _backoff(self, attempt: int) -> float:
        ceiling: float = min(self.interval * 2.0 ** min(attempt, 16), self.max_backoff)
        return ceiling * random.uniform(0.5, 1.0)

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        base = self.settings.endpoints["api"]
        async with phone_client(base, self.settings.timing) as http:
            created = await submit_job(http, "/polling/jobs", request.body(), self._backoff)
            job_id, token, href = created["job_id"], created["token"], created["href"]
            yield Submitted(job_id=job_id, token=token)
            headers = {"authorization": f"Bearer {token}"}
            cursor = 0
            etag: str | None = None
            outage_attempts = 0
            connected = False
            while True:
                if etag:
                    headers["if-none-match"] = etag
                wait = self.interval
                try:
                    response = await http.get(href, params={"after": cursor}, headers=headers)
                except httpx.TransportError as exc:
                    if outage_attempts == 0:
                        yield Disconnected(reason=f"{type(exc).__name__}")
                    outage_attempts += 1
                    await asyncio.sleep(self._backoff(outage_attempts))
                    continue
                status = response.status_code
                if status == 429 or status >= 500:
                    if outage_attempts == 0:
                        yield Disconnected(reason=f"http {status}")
                    outage_attempts += 1
                    hint = _retry_after(response.headers.get("retry-after"))
                    await asyncio.sleep(max(self._backoff(outage_attempts), hint or 0.0))
                    continue
                if status not in (200, 304):
                    raise TransportError(f"status URL answered {status}: {response.text[:200]}")
                if not connected:
                    connected = True
                    yield Connected()
                if outage_attempts:
                    yield Reconnected(attempt=outage_attempts)
                    yield Resumed(from_seq=cursor)
                    outage_attempts = 0
                if status == 304:
                    yield Alive()
                else:
                    body = response.json()
                    etag = response.headers.get("etag")
                    finished = False
                    for event in body["events"]:
                        yield Progress(
                            job_id=event["job_id"],
                            seq=event["seq"],
                            kind=event["kind"],
                            message=event["message"],
                        )
                        cursor = max(cursor, int(event["seq"]))
                        finished = finished or event["kind"] in TERMINAL
                    if finished:
                        return
                hint = _retry_after(response.headers.get("retry-after"))
                if hint is not None:
                    wait = max(wait, hint)
                await asyncio.sleep(wait)
