"""Worker instances killed the way Cloud Run kills them: jobs resume, nothing lost or doubled."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from progressbench.app.supervisor import Stack
from progressbench.core.config import ServiceConfig
from tests.helpers import UNIT, wait_for
from tests.integration.api_client import create_job, event_seqs, job_row, step_runs, wait_status

# 14 steps of 0.2-0.25 s at scale 0.05: a ~3 s job, slow enough to kill mid-way.
SLOW = {"step_seconds_min": 4, "step_seconds_max": 5}


@pytest.mark.smoke
def test_sigkill_mid_job_resumes_on_a_new_instance_from_its_last_step(stack: Stack) -> None:
    """After SIGKILL the replacement's watchdog resumes the job; every seq exactly once."""
    job = create_job(stack, **SLOW)
    job_id = job["job_id"]
    wait_for(lambda: job_row(stack, job_id)["current_step"] >= 4, 20, "4 steps committed")
    victim = stack.services["worker"].live()[0]
    stack.kill(victim)
    checkpoint = job_row(stack, job_id)["current_step"]
    assert 4 <= checkpoint < 14
    fresh = stack.replace(victim)
    row = wait_status(stack, job_id, {"done"}, timeout=30)

    assert event_seqs(stack, job_id) == list(range(1, 16))
    runs = step_runs(stack, job_id)
    assert [seq for seq, _, _ in runs] == list(range(1, 15)), "a step ran twice or not at all"
    assert {inst for seq, _, inst in runs if seq <= checkpoint} == {victim.name}
    assert {inst for seq, _, inst in runs if seq > checkpoint} == {fresh.name}
    assert row["attempt"] == 2 and row["context"]["instance"] == fresh.name
    assert row["context"]["kind"] == "worker-background"
    with psycopg.connect(stack.database_url) as conn:  # every run's span is known (wasted_work_s)
        spans = conn.execute(
            "SELECT started_at < finished_at FROM step_runs WHERE job_id = %s", (job_id,)
        ).fetchall()
    assert len(spans) == 14 and all(ok for (ok,) in spans)


def test_sigterm_releases_the_job_and_another_instance_finishes_it(two_worker_stack: Stack) -> None:
    """SIGTERM: the instance lets go within the grace period; the other instance resumes at once."""
    stack = two_worker_stack
    job = create_job(stack, **SLOW)
    job_id = job["job_id"]
    wait_for(lambda: job_row(stack, job_id)["current_step"] >= 3, 20, "3 steps committed")
    owner = job_row(stack, job_id)["context"]["instance"]
    assert stack.terminate(stack.instance(owner)) == "exited"
    row = wait_status(stack, job_id, {"done"}, timeout=30)
    assert event_seqs(stack, job_id) == list(range(1, 16))
    runs = step_runs(stack, job_id)
    assert [seq for seq, _, _ in runs] == list(range(1, 15))
    assert row["context"]["instance"] != owner and row["attempt"] == 2


def test_job_runner_tasks_split_jobs_and_record_where_they_ran(stack: Stack) -> None:
    """Cloud-Run-Jobs style: each task takes its share and records index/count/attempt."""
    stack.kill(stack.services["worker"].live()[0])  # nobody else may run these jobs
    jobs = [create_job(stack, owner=f"u{i}") for i in range(3)]
    ids = [j["job_id"] for j in jobs]
    procs = stack.start_job_runner(ids, task_count=2, attempt=0)
    assert [p.wait(timeout=60 * UNIT) for p in procs] == [0, 0]
    contexts = [job_row(stack, i)["context"] for i in ids]
    assert [c["kind"] for c in contexts] == ["job-runner"] * 3
    assert [c["task_index"] for c in contexts] == [0, 1, 0]
    assert {c["task_count"] for c in contexts} == {2}
    assert all(event_seqs(stack, i) == list(range(1, 16)) for i in ids)


def test_job_runner_rejects_bad_task_coordinates(database_url: str) -> None:
    """An index outside the task count is a clear error (exit 2), not a traceback."""
    config = ServiceConfig(
        role="worker", instance="job-runner", database_url=database_url, token_secret="s" * 32
    )
    env = dict(
        os.environ,
        CLOUD_RUN_TASK_INDEX="3",
        CLOUD_RUN_TASK_COUNT="2",
        PROGRESSBENCH_SERVICE_CONFIG=config.model_dump_json(),
    )
    done = subprocess.run(
        [sys.executable, "-m", "progressbench.app.services.jobrunner"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
    )
    assert done.returncode == 2 and "outside CLOUD_RUN_TASK_COUNT" in done.stderr
    assert "Traceback" not in done.stderr
