"""The lease renewal runs beside a job's work (executor ``Pulse``): a slow database does not stretch the work.

Against a real store: another transaction holds the job's row lock, so every
heartbeat (an ``UPDATE`` of that row) waits as it would behind a saturated
database; the step still ends when its planned duration is spent. A lease
taken over by another instance is still seen and stops the work.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from progressbench.core.job import Step
from progressbench.kit.executor import ExecutionContext, _work
from progressbench.kit.store import Store
from tests.helpers import UNIT
from tests.integration.test_executor_faults import SPEC, new_job

HEARTBEAT_S = 0.02
CTX = ExecutionContext(kind="worker-background", service="worker", instance="w1")


async def _claimed(store: Store) -> uuid.UUID:
    job_id = await new_job(store, transport="sse")
    assert await store.claim(job_id, "w1", CTX.as_json(), lease_s=60.0) is not None
    return job_id


async def test_a_step_ends_on_plan_while_its_heartbeats_wait_for_the_database(database_url: str) -> None:
    """Ten heartbeat intervals of work with the row locked elsewhere: the step finishes (before the
    lock is let go), where an inline heartbeat would have waited for the lock."""
    store = Store(database_url)
    await store.open()
    try:
        job_id = await _claimed(store)
        step = Step(1, "w", 1, 1, duration_s=10 * HEARTBEAT_S)
        async with await psycopg.AsyncConnection.connect(database_url) as blocker:
            async with blocker.transaction():
                await blocker.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
                async with asyncio.timeout(10 * UNIT):
                    verdict = await _work(store, job_id, "w1", step, HEARTBEAT_S, 1.0, asyncio.Event())
                assert verdict == "finished"
        assert await store.heartbeat(job_id, "w1")  # the lease is still w1's once the lock is gone
    finally:
        await store.close()


async def test_a_lease_taken_over_still_stops_the_work(database_url: str) -> None:
    """Another instance holds the lease now: the next answered renewal says so and the step stops."""
    store = Store(database_url)
    await store.open()
    try:
        job_id = await _claimed(store)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("UPDATE jobs SET lease_owner = 'w2' WHERE id = %s", (job_id,))
        long_step = Step(1, "w", 1, 1, duration_s=3600.0)
        async with asyncio.timeout(10 * UNIT):
            verdict = await _work(store, job_id, "w1", long_step, HEARTBEAT_S, 1.0, asyncio.Event())
        assert verdict == "lost"
    finally:
        await store.close()
