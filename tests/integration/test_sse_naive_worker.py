"""``sse-naive`` runs its job inside a worker's streaming request, so a worker's SIGTERM hits it.

Cloud Run "sends SIGTERM and gives the instance 10 seconds before SIGKILL [...] your SSE handler
is in the same boat as the subway-tunnel client from the other end" (seeds/000). The job dies with
the instance, nothing adopts it (the pattern has no watchdog), and the phone's retry is a new job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from progressbench.app.session import run_session
from progressbench.app.supervisor import Stack
from progressbench.core.config import JobShape, Timing
from tests.helpers import UNIT
from tests.integration.api_client import job_row, step_runs
from tests.integration.conftest import SCALE, running_stack
from tests.integration.sse_helpers import score, session_spec, wait_for_events

# 14 steps of 0.3 s at scale 0.05: a ~4 s job, long enough to be killed mid-way.
SHAPE = JobShape(step_seconds_min=6.0, step_seconds_max=6.0)


@pytest.fixture
def patient_stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """Session deadline and request timeout of 60 s: a replacement worker may take seconds to
    start on a busy machine, and this test is about the kill, not about timeouts."""
    timing = Timing(time_scale=SCALE, session_deadline_s=1200.0, request_timeout_s=1200.0)
    with running_stack(tmp_path, database_url, timing=timing) as running:
        yield running


async def test_sigterm_on_the_worker_kills_the_naive_stream_and_its_job(patient_stack: Stack) -> None:
    """The victim is the worker holding the naive job; the job stays stuck where it died (never
    adopted by the replacement's watchdog); the phone retries with a new job that finishes."""
    stack = patient_stack
    timing = stack.settings.timing
    spec = session_spec("sse-naive", "naive-sigterm", stack.endpoints()["api"], timing, SHAPE)
    session = asyncio.create_task(run_session(spec))
    first_id = await wait_for_events(stack.database_url, "naive-sigterm", 3, timeout=10)
    holder = job_row(stack, first_id)
    assert holder["context"]["kind"] == "request"
    victim = stack.instance(holder["lease_owner"])
    assert victim.role == "worker", "the naive job runs on a worker instance, not in the API"

    await asyncio.to_thread(stack.server_fault, "sigterm")
    assert not victim.alive()
    record = await asyncio.wait_for(session, timeout=90 * UNIT)

    assert record.outcome == "terminal"
    assert record.job_id == first_id and record.extra_job_ids
    row = score(stack.database_url, record)
    assert row.disconnects >= 1 and row.resume_restarted >= 1
    assert row.executions == 1 + len(record.extra_job_ids)
    # the killed job: still "running" under the dead instance's lease, run once, never resumed
    dead = job_row(stack, first_id)
    assert dead["status"] == "running" and dead["lease_owner"] == victim.name and dead["attempt"] == 1
    assert {instance for _, _, instance in step_runs(stack, first_id)} == {victim.name}
    assert row.job_status == "running" and row.events_expected < SHAPE.total_steps  # no terminal, ever
    retry = job_row(stack, record.extra_job_ids[-1])
    assert retry["status"] == "done" and retry["context"]["instance"] != victim.name
