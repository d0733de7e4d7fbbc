"""``realtime`` as Pattern A runs in production (seeds/000): in-request work, no retry, no watchdog.

The worker runs the job inside the dispatch request and the API's 8 s abort
(floored at 1 s, scaled) only ends the caller's wait; SIGTERM mid-job leaves
the job stuck; a dispatch that outlives a cold start is lost; the
``realtime:watchdog`` variant's cron (60 s real, here 20 s real = 1 s scaled)
re-dispatches what the pattern alone leaves stuck. Real processes, bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from progressbench.app.supervisor import Stack
from progressbench.core.config import JobShape, Timing
from tests.helpers import UNIT, wait_until
from tests.integration.api_client import auth, event_seqs, job_row, step_runs
from tests.integration.conftest import SCALE, running_stack

# 14 steps of 0.2-0.25 s at scale 0.05: a ~3 s job, longer than the dispatch's 1 s abort.
SLOW = JobShape(step_seconds_min=4, step_seconds_max=5)
ALL = list(range(1, SLOW.total_steps + 2))
#: A 60 s cron would be 3 s scaled; 20 s keeps the test short without changing what it shows.
TIMING = Timing(time_scale=SCALE, watchdog_cron_s=20.0)


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """A realtime stack of the test's own (it stops and replaces the worker)."""
    with running_stack(tmp_path, database_url, transports=("realtime",), timing=TIMING) as running:
        yield running


async def create(stack: Stack, owner: str, variant: str | None = None) -> str:
    """A job of the signed-in test user ``owner``."""
    body = {"seed": 2, "time_scale": SCALE, "shape": SLOW.model_dump(mode="json")}
    params = {"variant": variant} if variant else None
    api = stack.endpoints()["api"]
    headers = await asyncio.to_thread(auth, api, owner)
    async with httpx.AsyncClient(base_url=api, timeout=10 * UNIT) as http:
        response = await http.post("/realtime/jobs", json=body, params=params, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def row(stack: Stack, job_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(job_row, stack, job_id)


async def until(stack: Stack, job_id: str, what: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        current = await row(stack, job_id)
        return current if check(current) else None

    return await wait_until(reached, timeout, f"job {job_id}: {what}")


async def test_the_worker_runs_the_job_inside_the_dispatch_request_and_outlives_the_abort(
    stack: Stack,
) -> None:
    """A ~3 s job behind a 1 s abort: the caller gave up long before, the worker finished anyway."""
    job_id = await create(stack, "alice")
    done = await until(stack, job_id, "done", lambda r: r["status"] == "done")
    assert done["context"]["kind"] == "request" and done["context"]["service"] == "worker"
    assert done["context"]["trigger"] == "dispatch" and done["attempt"] == 1
    assert event_seqs(stack, job_id) == ALL


async def test_sigterm_leaves_the_job_stuck_and_the_watchdog_cron_recovers_its_variant(stack: Stack) -> None:
    """SIGTERM mid-job: the pattern's job stays ``interrupted`` (nothing retries it), the
    ``realtime:watchdog`` job is re-dispatched by the cron and resumes from its checkpoint."""
    plain, watched = await asyncio.gather(create(stack, "bob"), create(stack, "carol", "watchdog"))
    for job_id in (plain, watched):
        await until(stack, job_id, "3 steps", lambda r: r["current_step"] >= 3)
    victim = stack.services["worker"].live()[0]
    assert await asyncio.to_thread(stack.terminate, victim) in ("exited", "killed")
    await asyncio.to_thread(stack.replace, victim)

    recovered = await until(stack, watched, "done through the cron", lambda r: r["status"] == "done")
    assert recovered["context"]["trigger"] == "cron" and recovered["attempt"] == 2
    assert event_seqs(stack, watched) == ALL
    assert [seq for seq, _, _ in step_runs(stack, watched)] == list(range(1, 15)), "resumed, not rerun"

    # Several cron periods have passed since the SIGTERM; the pattern's own job was never touched.
    stuck = await row(stack, plain)
    assert stuck["status"] == "interrupted" and stuck["attempt"] == 1
    assert event_seqs(stack, plain)[-1] < SLOW.total_steps + 1, "a stuck job wrote no terminal event"


async def test_a_dispatch_that_outlives_the_abort_during_a_cold_start_is_lost(stack: Stack) -> None:
    """No worker for longer than the abort: the queued request is dropped, the job stays pending."""
    victim = stack.services["worker"].live()[0]
    await asyncio.to_thread(stack.kill, victim)
    lost = await create(stack, "dave")
    # The replacement's cold start (3 s) outlasts the 1 s abort.
    await asyncio.to_thread(stack.replace, victim, 3.0)
    later = await create(stack, "erin")
    await until(stack, later, "done", lambda r: r["status"] == "done")
    # The lost dispatch was queued before the later one and is answered first, if at all.
    pending = await row(stack, lost)
    assert pending["status"] == "pending" and pending["attempt"] == 0 and pending["context"] is None
    assert event_seqs(stack, lost) == []
