"""Scale-out through the real front: long SSE streams start instances, idle ones are stopped.

A stack with autoscaling on and a tiny concurrency (4 per API instance), so
a handful of streams stands for thousands of phones: each open stream holds
its slot for its whole life, the front queues what does not fit, the
autoscaler starts just enough instances (after their scaled cold start;
a warm standby, not serving and not counted, may exist besides them),
and once the streams end it stops the idle ones after the scaled idle
period, back to the floor of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from progressbench.app.supervisor import Stack
from progressbench.core.config import Timing
from progressbench.core.errors import StackError
from tests.helpers import UNIT, wait_for, wait_until
from tests.integration.api_client import auth, create_job, job_row
from tests.integration.conftest import SCALE, running_stack

CONCURRENCY = 4
STREAMS = 10  # ⌈10 / 4⌉ = 3 instances needed, under the ceiling of 5
#: idle period 20 s and cold start 2 s, scaled: 1 s and 0.1 s
TIMING = Timing(time_scale=SCALE, scale_down_idle_s=20.0)
#: steps of 1 s at this scale: each stream stays open well past the scale-up
LONG = {"step_seconds_min": 20.0, "step_seconds_max": 20.0}


@pytest.fixture
def scaled_stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    with running_stack(
        tmp_path,
        database_url,
        timing=TIMING,
        transports=("sse",),
        autoscale=True,
        api_concurrency=CONCURRENCY,
        max_instances=5,
    ) as stack:
        yield stack


def serving(stack: Stack, role: str = "api") -> list[str]:
    return [i.name for i in stack.services[role].live() if i.ready and not i.draining and not i.standby]


async def _open_stream(http: httpx.AsyncClient, headers: dict[str, str], opened: list[int]) -> None:
    """Create an sse job and hold its event stream open (retrying a 429 after its Retry-After)."""
    created = await http.post("/sse/jobs", json={"time_scale": SCALE, "shape": LONG}, headers=headers)
    assert created.status_code == 202, created.text
    job = created.json()
    stream_auth = {"authorization": f"Bearer {job['token']}", "accept": "text/event-stream"}
    while True:
        async with http.stream("GET", job["events_href"], headers=stream_auth) as response:
            if response.status_code == 429:
                await asyncio.sleep(float(response.headers.get("retry-after", "0.1")))
                continue
            assert response.status_code == 200
            opened.append(1)
            async for _ in response.aiter_bytes():
                pass
            return


async def test_a_burst_of_long_streams_scales_out_to_the_need_then_back_to_the_floor(
    scaled_stack: Stack,
) -> None:
    """10 streams at 4 per instance: 3 instances serve them (never more than 4 each, and no
    more instances than needed); after the streams end, idle instances stop after the scaled
    idle period until one is left."""
    stack = scaled_stack
    autoscaler = stack.autoscaler
    assert autoscaler is not None
    api = stack.endpoints()["api"]
    headers = auth(api, "scaleout")
    assert serving(stack) == ["api-1"]
    opened: list[int] = []
    limits = httpx.Limits(max_connections=STREAMS * 2)
    async with httpx.AsyncClient(base_url=api, timeout=30 * UNIT, limits=limits) as http:
        tasks = [asyncio.create_task(_open_stream(http, headers, opened)) for _ in range(STREAMS)]
        try:
            await wait_until(lambda: len(opened) == STREAMS, 60 * UNIT, "every stream open")
            front = autoscaler.roles["api"].front
            busy = {name: front.in_flight(name) for name in serving(stack)}
            assert len(serving(stack)) == 3, busy
            assert sum(busy.values()) == STREAMS and max(busy.values()) <= CONCURRENCY, busy
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    wait_for(
        lambda: len([i for i in stack.services["api"].live() if not i.standby]) == 1,
        30 * UNIT,
        "idle instances stopped to the floor",
    )
    counts = stack.instance_counts(autoscaler.roles["api"].timeline.points[0][0])
    assert counts["api"].max == 3 and counts["api"].timeline[-1][1] == 1
    assert stack.meters()["api"]["pb_instances_stopped_total"] == 2
    # Each scale-out start is timed from its decision to serving, never shorter than the scaled
    # cold start (the run lists the slowest as a distortion when it is longer).
    started = sum(int(stack.meters()[role]["pb_instances_started_total"]) for role in ("api", "worker"))
    cold_s = TIMING.scaled(TIMING.cold_start_s)
    assert len(autoscaler.startups) == started >= 2
    assert all(seconds >= cold_s * 0.99 for seconds in autoscaler.startups), autoscaler.startups


def test_without_autoscale_the_stack_keeps_one_process_per_service(stack: Stack) -> None:
    """The bare stack (benchmarks, most tests) has no front: instances share the service socket."""
    assert stack.autoscaler is None
    assert all(i.url is None for s in stack.services.values() for i in s.instances)
    assert stack.instance_counts(0.0) == {}


def test_a_killed_worker_is_replaced_once_and_served_through_the_front(
    tmp_path: Path, database_url: str
) -> None:
    """SIGKILL of the busiest worker behind its front: one replacement (the autoscaler's start, not
    a second one beside it), and a job dispatched afterwards runs on it to the end."""
    with running_stack(
        tmp_path, database_url, timing=TIMING, transports=("polling",), autoscale=True
    ) as stack:
        assert stack.autoscaler is not None
        stack.server_fault("sigkill")
        workers = [i.name for i in stack.services["worker"].live() if not i.standby]
        assert workers == ["worker-2"]  # the only start: no second one, no standby for an idle service
        job = create_job(stack, owner="after-kill")
        wait_for(lambda: job_row(stack, job["job_id"])["status"] == "done", 60 * UNIT, "the job done")
        assert [i.name for i in stack.services["worker"].live() if not i.standby] == workers
        assert stack.meters()["worker"]["pb_instances_started_total"] == 1


def test_a_start_that_never_gets_ready_is_stopped_counted_and_told_in_one_line(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On a saturated machine a started instance may not be ready within the start-up bound. Cloud
    Run stops an instance that fails its start-up probe: so does the autoscaler, counting the failed
    start and saying so in one warning line; nothing escapes as a traceback and no process is left."""
    with running_stack(
        tmp_path, database_url, timing=TIMING, transports=("polling",), autoscale=True
    ) as stack:
        assert stack.autoscaler is not None
        before = [i.name for i in stack.services["worker"].live() if not i.standby]
        stack.fleet.startup_timeout_s = 0.001  # no Python process is ready this fast
        assert stack.autoscaler.reserve("worker")
        with pytest.raises(StackError, match="no replacement worker instance started"):
            stack.autoscaler.replace_reserved("worker")
        wait_for(
            lambda: [i.name for i in stack.services["worker"].live() if not i.standby] == before,
            30 * UNIT,
            "the stalled start stopped",
        )
        meters = stack.meters()["worker"]
        assert meters["pb_instance_starts_failed_total"] == 1
        assert meters["pb_instances_started_total"] == 1
        [line] = [r.getMessage() for r in caplog.records if "not ready after" in r.getMessage()]
        assert line.startswith("autoscaler: worker-") and line.endswith("stopped it")
