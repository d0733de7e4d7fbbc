"""The executor against a real store: retryable upstream failures, unfenced executions, stale-job queries."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from progressbench.core.config import JobShape, Timing, Wave
from progressbench.core.job import JobSpec
from progressbench.kit.executor import ExecutionContext, run_job, upstream_fails
from progressbench.kit.store import Store
from tests.helpers import wait_until

TIMING = Timing(time_scale=0.01)
SPEC = JobSpec(
    shape=JobShape(waves=(Wave(label="w", items=6),), step_seconds_min=2, step_seconds_max=2), time_scale=0.01
)
#: 6 steps of 0.02 s, the terminal event is seq 7.
ALL = list(range(1, 8))


def context(instance: str) -> ExecutionContext:
    return ExecutionContext(kind="request", service="worker", instance=instance)


async def new_job(
    store: Store, transport: str = "relay:ack-at-end", job_id: uuid.UUID | None = None
) -> uuid.UUID:
    job_id = job_id or uuid.uuid4()
    await store.create_job(job_id, "alice", transport, SPEC.model_dump(mode="json"), 6)
    return job_id


def rows(database_url: str, sql: str, job_id: uuid.UUID) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return [tuple(r) for r in conn.execute(sql, (job_id,)).fetchall()]


async def test_an_upstream_failure_releases_the_job_and_a_retry_resumes_it(database_url: str) -> None:
    """The failing step's work is not committed; the job waits ``interrupted`` with the error;
    a later execution resumes from the checkpoint and every step commits exactly once."""
    store = Store(database_url)
    await store.open()
    try:
        # A job whose third step's call fails on attempt 1 (draws are seeded by id, step, attempt).
        unlucky = next(i for i in (uuid.uuid4() for _ in range(1000)) if upstream_fails(i, 3, 1, 0.4))
        job_id = await new_job(store, job_id=unlucky)
        attempt, outcome = 0, ""
        while outcome != "done":
            attempt += 1
            outcome = await run_job(
                store, job_id, context(f"w{attempt}"), TIMING, asyncio.Event(), upstream_failure_rate=0.4
            )
            assert outcome in ("done", "retryable")
            if outcome == "retryable":
                status, error = rows(database_url, "SELECT status, error FROM jobs WHERE id = %s", job_id)[0]
                assert status == "interrupted" and "upstream call failed" in str(error)
            assert attempt < 50
        assert attempt >= 2, "step 3 failed on the first attempt"
        runs = rows(database_url, "SELECT seq FROM step_runs WHERE job_id = %s ORDER BY seq", job_id)
        assert [r[0] for r in runs] == list(range(1, 7)), "a failed step's work is redone, committed once"
        events = rows(database_url, "SELECT seq FROM job_events WHERE job_id = %s ORDER BY seq", job_id)
        assert [r[0] for r in events] == ALL
    finally:
        await store.close()


async def test_an_unfenced_execution_takes_a_running_job_and_both_do_the_work(database_url: str) -> None:
    """A worker without leases: a second execution starts from the checkpoint while the first runs;
    neither stops; events converge, the repeated steps show in step_runs (a duplicate execution)."""
    store = Store(database_url)
    await store.open()
    try:
        job_id = await new_job(store)
        slow = Timing(time_scale=0.05)  # 0.1 s steps: room for the second execution to join
        first = asyncio.create_task(
            run_job(store, job_id, context("w1"), slow, asyncio.Event(), fenced=False)
        )

        async def two_steps() -> bool:
            return bool(rows(database_url, "SELECT 1 FROM jobs WHERE id = %s AND current_step >= 2", job_id))

        await wait_until(two_steps, 10, "two steps committed")
        second = await run_job(store, job_id, context("w2"), slow, asyncio.Event(), fenced=False)
        outcomes = {await first, second}
        assert "done" in outcomes and outcomes <= {"done", "lost"}
        runs = [r[0] for r in rows(database_url, "SELECT seq FROM step_runs WHERE job_id = %s", job_id)]
        assert sorted(set(runs)) == list(range(1, 7)) and len(runs) > 6, "some step ran twice"
        events = rows(database_url, "SELECT seq FROM job_events WHERE job_id = %s ORDER BY seq", job_id)
        assert [r[0] for r in events] == ALL
    finally:
        await store.close()


async def test_stale_jobs_are_the_crons_and_orphans_only_the_opted_in_transports(database_url: str) -> None:
    """A released job is stale for the cron of its exact transport; the lease watchdog's query
    covers exactly the names it is given (each variant listed), nothing of any other."""
    store = Store(database_url)
    await store.open()
    try:
        released = await new_job(store, "realtime:watchdog")
        other = await new_job(store, "realtime")
        for job_id in (released, other):
            assert await store.claim(job_id, "w1", {"kind": "request"}, 5.0)
            assert await store.release(job_id, "w1")
        assert released in await store.stale_jobs(["realtime:watchdog"], 5.0)
        assert other not in await store.stale_jobs(["realtime:watchdog"], 5.0)
        orphans = await store.orphaned_jobs(5.0, ["polling"])
        assert released not in orphans and other not in orphans
        plain = await store.orphaned_jobs(5.0, ["realtime"])
        assert other in plain and released not in plain
        assert released in await store.orphaned_jobs(5.0, ["realtime:watchdog"])
    finally:
        await store.close()
