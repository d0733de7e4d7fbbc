"""The lease renewal runs beside a job's work (executor ``Pulse``): a slow database does not stretch the work.

Against a real store: another transaction holds the job's row lock, so every
heartbeat (an ``UPDATE`` of that row) waits as it would behind a saturated
database; the step still ends when its planned duration is spent. A lease
taken over by another instance is still seen and stops the work. An
instance running many jobs renews all their leases in one statement
(``LeaseRenewer``).
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from progressbench.core.config import JobShape, Wave
from progressbench.core.job import JobSpec, Step
from progressbench.kit.executor import ExecutionContext, LeaseRenewer, Pulse, _work, run_job
from progressbench.kit.store import Store
from tests.helpers import UNIT, wait_until
from tests.integration.test_executor_faults import TIMING, new_job

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


def _heartbeats(database_url: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, object]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT id, heartbeat_at FROM jobs WHERE id = ANY(%s)", (ids,)).fetchall())


async def test_an_instance_renews_all_its_leases_together_and_sees_one_taken_over(database_url: str) -> None:
    """The instance's renewer keeps both leases fresh; once another instance holds one of them, that
    job (and only it) is reported lost to its pulse."""
    store = Store(database_url)
    await store.open()
    renewer = LeaseRenewer(store, "w1", HEARTBEAT_S)
    try:
        kept, taken = await _claimed(store), await _claimed(store)
        before = _heartbeats(database_url, [kept, taken])
        renewer.hold(kept)
        renewer.hold(taken)
        await wait_until(
            lambda: all(
                after != before[job] for job, after in _heartbeats(database_url, [kept, taken]).items()
            ),
            10,
            "both leases renewed",
        )
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("UPDATE jobs SET lease_owner = 'w2' WHERE id = %s", (taken,))
        await wait_until(lambda: renewer.lost(taken), 10, "the taken lease reported lost")
        assert not renewer.lost(kept)
        assert Pulse(store, taken, "w1", renewer).lost() and not Pulse(store, kept, "w1", renewer).lost()
        renewer.drop(taken)
        assert not renewer.lost(taken)
    finally:
        await renewer.close()
        await store.close()


async def test_a_job_run_by_a_pool_keeps_its_lease_through_a_long_step(database_url: str) -> None:
    """A whole job through ``run_job`` with the instance's renewer (no per-job heartbeat): long
    after its claim its lease is still fresh, so nobody else can claim it, and it ends done."""
    store = Store(database_url)
    await store.open()
    renewer = LeaseRenewer(store, "w1", HEARTBEAT_S)
    lease_s = 5 * HEARTBEAT_S
    long = JobSpec(
        shape=JobShape(waves=(Wave(label="w", items=1),), step_seconds_min=200, step_seconds_max=200),
        time_scale=0.01,
    )  # one step of 2 s
    try:
        job_id = uuid.uuid4()
        await store.create_job(job_id, "alice", "sse", long.model_dump(mode="json"), 1)
        run = asyncio.create_task(run_job(store, job_id, CTX, TIMING, asyncio.Event(), renewer=renewer))

        def renewed_long_after_the_claim() -> bool:
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT extract(epoch FROM heartbeat_at - started_at) FROM jobs WHERE id = %s", (job_id,)
                ).fetchone()
            return row is not None and row[0] is not None and float(row[0]) > 2 * lease_s

        await wait_until(renewed_long_after_the_claim, 10, "a renewal two leases after the claim")
        assert await store.claim(job_id, "w2", CTX.as_json(), lease_s=lease_s) is None
        async with asyncio.timeout(30 * UNIT):
            assert await run == "done"
        assert not renewer.lost(job_id)
    finally:
        await renewer.close()
        await store.close()


async def test_a_step_commit_is_one_statement_fenced_by_the_lease(database_url: str) -> None:
    """The single-statement commit writes the step run, the event and its notification together,
    and nothing at all for an instance that lost the lease."""
    store = Store(database_url)
    await store.open()
    try:
        job_id = await _claimed(store)
        step = Step(1, "w", 1, 6, duration_s=0.01)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
            await listener.execute("LISTEN job_events")
            assert await store.commit_step(job_id, "alice", step, 6, 1, "w1", CTX.as_json(), worked_s=0.01)
            note = await anext(listener.notifies(timeout=10 * UNIT))
            assert note.payload == f'["{job_id}", 1]'
            await listener.execute("UPDATE jobs SET lease_owner = 'w2' WHERE id = %s", (job_id,))
            second = Step(2, "w", 2, 6, duration_s=0.01)
            assert not await store.commit_step(job_id, "alice", second, 6, 1, "w1", CTX.as_json())
            cur = await listener.execute(
                "SELECT (SELECT array_agg(seq ORDER BY seq) FROM step_runs WHERE job_id = %(id)s),"
                " (SELECT array_agg(seq ORDER BY seq) FROM job_events WHERE job_id = %(id)s),"
                " (SELECT current_step FROM jobs WHERE id = %(id)s)",
                {"id": job_id},
            )
            assert await cur.fetchone() == ([1], [1], 1)
    finally:
        await store.close()
