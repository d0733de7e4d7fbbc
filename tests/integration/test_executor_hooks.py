"""The executor announces each committed event to the job's transport hook, resumed jobs too."""

from __future__ import annotations

import asyncio
import uuid

from progressbench.core.config import JobShape, Timing, Wave
from progressbench.core.job import JobSpec, plan
from progressbench.kit.database import migrate
from progressbench.kit.executor import Committed, ExecutionContext, run_job
from progressbench.kit.store import Store
from tests.helpers import wait_until

TIMING = Timing(time_scale=0.01)


async def test_hook_sees_every_commit_once_across_a_resume(database_url: str) -> None:
    """Steps before the interruption and after the resume are each announced once, then done."""
    assert migrate(database_url) == [], "the clone arrives migrated; migrating again is a no-op"
    store = Store(database_url)
    await store.open()
    seen: list[tuple[str, int, str]] = []

    async def hook(event: Committed) -> None:
        seen.append((event.transport, event.seq, event.kind))
        if event.seq == 3:
            raise RuntimeError("a flaky notification channel must not stop the job")

    spec = JobSpec(
        shape=JobShape(waves=(Wave(label="w", items=6),), step_seconds_min=2, step_seconds_max=2),
        time_scale=0.01,
    )
    job_id = uuid.uuid4()
    await store.create_job(job_id, "alice", "relay:ack-at-end", spec.model_dump(mode="json"), 6)
    first = ExecutionContext(kind="worker-background", service="worker", instance="w1")
    stop = asyncio.Event()

    async def interrupt() -> None:
        await wait_until(lambda: len(seen) >= 2, 10, "two commits announced", interval=0.005)
        stop.set()

    hooks = {"relay:ack-at-end": hook}.get
    outcome, _ = await asyncio.gather(run_job(store, job_id, first, TIMING, stop, hooks=hooks), interrupt())
    assert outcome == "released"
    second = ExecutionContext(kind="worker-background", service="worker", instance="w2")
    assert await run_job(store, job_id, second, TIMING, asyncio.Event(), hooks=hooks) == "done"
    await store.close()
    assert [s for _, s, _ in seen] == list(range(1, plan(spec).terminal_seq + 1))
    assert seen[-1] == ("relay:ack-at-end", 7, "done")
