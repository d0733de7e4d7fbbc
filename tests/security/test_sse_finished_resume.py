"""Probe 10: an SSE stream resumed at or past a finished job's terminal seq closes at once.

Before the fix, ``Last-Event-ID`` ≥ the terminal seq of a finished job held
the stream open with heartbeats until the platform's request timeout (300 s
in production). The stack here stretches that timeout to 300 s (scaled), so a
stream that does not end by itself trips the client's read timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from progressbench.app.supervisor import Stack
from progressbench.core.config import Timing
from tests.helpers import UNIT
from tests.integration.api_client import auth
from tests.integration.conftest import SCALE, running_stack

pytestmark = pytest.mark.integration

SHAPE = {"waves": [{"label": "w", "items": 2}], "step_seconds_min": 1.0, "step_seconds_max": 1.0}


@pytest.fixture(scope="module")
def sse(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    timing = Timing(time_scale=SCALE, request_timeout_s=300 / SCALE)
    with running_stack(tmp_path_factory.mktemp("sse"), module_database_url, timing=timing) as stack:
        yield stack


def read_stream(http: httpx.Client, url: str, token: str, last_event_id: int | None) -> list[str]:
    """Every ``event:`` line of the stream, until the server ends it (heartbeats keep a held stream
    readable, so the deadline is on the whole stream, not on each read)."""
    headers = {"authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["last-event-id"] = str(last_event_id)
    deadline = time.monotonic() + 10 * UNIT
    events = []
    with http.stream("GET", url, headers=headers, timeout=httpx.Timeout(10 * UNIT)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event:"):
                events.append(line.removeprefix("event: "))
            assert time.monotonic() < deadline, f"stream still open after {10 * UNIT:.0f}s: {events}"
    return events


@pytest.mark.parametrize("past", [0, 1, 1000])
def test_resuming_a_finished_job_at_its_end_closes_the_stream(sse: Stack, past: int) -> None:
    api = sse.endpoints()["api"]
    with httpx.Client(base_url=api, timeout=10 * UNIT) as http:
        created = http.post(
            "/sse/jobs", json={"time_scale": SCALE, "shape": SHAPE}, headers=auth(api, "alice")
        ).json()
        events = read_stream(http, created["events_href"], created["token"], None)
        assert events == ["step", "step", "done"]
        terminal = len(events)
        assert read_stream(http, created["events_href"], created["token"], terminal + past) == []
        # One before the end still gets the terminal event, then the stream ends.
        assert read_stream(http, created["events_href"], created["token"], terminal - 1) == ["done"]
