"""``polling:in-instance`` (seeds/003): the job runs on the API instance that accepted it, with CPU
only while that instance serves a request; an instance idle for its idle period is reaped with it."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from progressbench.app.supervisor import Stack
from progressbench.core.config import JobShape, Timing, Wave
from progressbench.core.job import JobSpec
from progressbench.core.throttle import Cpu
from progressbench.kit.executor import ExecutionContext, run_job
from progressbench.kit.store import Store
from tests.helpers import UNIT, wait_for, wait_until
from tests.integration.api_client import auth, job_row

TIMING = Timing(time_scale=0.01)


async def test_throttled_job_waits_then_runs_then_dies_with_its_reaped_instance(database_url: str) -> None:
    """While the gate says ``wait`` no step commits; on ``run`` steps commit; ``reaped`` abandons the job
    (``failed``, its reason recorded, no lease left for a watchdog)."""
    store = Store(database_url)
    await store.open()
    spec = JobSpec(
        shape=JobShape(waves=(Wave(label="w", items=6),), step_seconds_min=2, step_seconds_max=2),
        time_scale=0.01,
    )
    job_id = uuid.uuid4()
    await store.create_job(job_id, "alice", "polling:in-instance", spec.model_dump(mode="json"), 6)
    ctx = ExecutionContext(kind="instance-background", service="api", instance="api-1")
    mode: list[Cpu] = ["wait"]
    asked = [0]

    def gate() -> tuple[Cpu, float]:
        asked[0] += 1
        return mode[0], 0.002

    async def drive() -> None:
        # throttled for many times a step's length (0.02 s): nothing may commit
        await wait_until(lambda: asked[0] >= 200, 20, "the job asked for CPU 200 times", interval=0.005)
        job = await store.get_job(job_id)
        assert job is not None and job.status == "running" and job.current_step == 0
        mode[0] = "run"
        while True:  # runs once CPU is given
            job = await store.get_job(job_id)
            assert job is not None
            if job.current_step >= 2:
                break
            await asyncio.sleep(0.005)
        mode[0] = "reaped"

    outcome, _ = await asyncio.wait_for(
        asyncio.gather(run_job(store, job_id, ctx, TIMING, asyncio.Event(), cpu=gate), drive()),
        timeout=30 * UNIT,
    )
    job = await store.get_job(job_id)
    await store.close()
    assert outcome == "reaped"
    assert job is not None and job.status == "failed" and 2 <= job.current_step < 6
    assert job.lease_owner is None and "reaped" in (job.error or "")


def test_in_instance_job_progresses_only_while_polled(module_stack: Stack, http: httpx.Client) -> None:
    """Nobody polls: the accepting API instance is throttled and the job stays at step 0 for many
    steps' time. Polled: it advances. It ran on the API, as its declared context says."""
    stack = module_stack
    api = stack.endpoints()["api"]
    body = {
        "seed": 1,
        "time_scale": stack.settings.timing.time_scale,
        "shape": {"step_seconds_min": 2.0, "step_seconds_max": 2.0},  # 0.1 s steps at scale 0.05
    }
    created = http.post(f"{api}/polling/in-instance/jobs", json=body, headers=auth(api, "ina"))
    assert created.status_code == 202, created.text
    job = created.json()
    wait_for(lambda: job_row(stack, job["job_id"])["status"] == "running", 10, "job claimed")
    # An observation window, not a synchronisation: ten steps' time with no request to the API.
    window_end = time.monotonic() + 1.0 * UNIT
    while time.monotonic() < window_end:
        assert job_row(stack, job["job_id"])["current_step"] == 0, "the job advanced with nobody polling"
        time.sleep(0.05)
    headers = {"authorization": f"Bearer {job['token']}"}

    def polled_step() -> bool:
        answer = http.get(api + job["href"], headers=headers)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["current_step"]) >= 3

    wait_for(polled_step, 20, "the job advancing while polled", interval=0.01)
    row = job_row(stack, job["job_id"])
    assert row["context"]["kind"] == "instance-background" and row["context"]["service"] == "api"
