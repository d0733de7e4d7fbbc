"""``relay`` as Pattern B runs in production (seeds/000), on real processes.

ACK-at-end keeps Cloud Tasks' retry: an upstream failure answers 5xx and the
queue's backoff resumes the job from its checkpoint; a job longer than the
dispatch deadline is pushed again while it runs (a duplicate execution);
held requests count against the worker's concurrency (429 + backoff).
202-first gives the retry up: its failed job waits for the watchdog cron.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from progressbench.app.supervisor import Stack
from progressbench.app.truth import read_truth
from progressbench.core.config import JobShape, ServerConditions, Timing
from tests.helpers import UNIT, wait_for
from tests.integration.api_client import auth, event_seqs, job_row, step_runs
from tests.integration.conftest import SCALE, running_stack

SLOW = JobShape(step_seconds_min=4, step_seconds_max=5)  # ~3 s at SCALE
ALL = list(range(1, SLOW.total_steps + 2))
#: The cron at 20 s real (1 s scaled) rather than 60 s: the same story, a shorter test.
TIMING = Timing(time_scale=SCALE, watchdog_cron_s=20.0)


def create(stack: Stack, owner: str, ack: str, shape: JobShape = SLOW) -> str:
    """A job of the signed-in test user ``owner``."""
    body = {"seed": 4, "time_scale": SCALE, "shape": shape.model_dump(mode="json")}
    api = stack.endpoints()["api"]
    response = httpx.post(
        f"{api}/relay/jobs", params={"ack": ack}, json=body, headers=auth(api, owner), timeout=10 * UNIT
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def done(stack: Stack, job_id: str, timeout: float = 60) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        row = job_row(stack, job_id)
        return row if row["status"] in ("done", "failed") else None

    return wait_for(finished, timeout, f"job {job_id} to finish")


def tasks(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute(
            "SELECT name, state, dispatch_count, last_status FROM relay_tasks WHERE job_id = %s "
            "ORDER BY created_at",
            (job_id,),
        ).fetchall()
    return [dict(zip(("name", "state", "dispatch_count", "last_status"), r, strict=True)) for r in rows]


@pytest.fixture
def flaky_stack(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Every step's upstream call fails half the time (the ``flaky-upstream`` condition, harsher).

    About 14 failures land on one ACK-at-end task: with Cloud Tasks' default doubling backoff the
    last waits would run to minutes, so the queue caps it at 10 s (``maxBackoff``, a queue setting).
    """
    monkeypatch.setenv("PROGRESSBENCH_RELAY_QUEUE", json.dumps({"max_backoff_s": 10.0}))
    with running_stack(
        tmp_path,
        database_url,
        transports=("relay",),
        timing=TIMING,
        conditions=ServerConditions(upstream_failure_rate=0.5),
    ) as running:
        yield running


def test_upstream_failures_are_retried_by_the_queue_in_ack_at_end_and_by_the_cron_in_202(
    flaky_stack: Stack,
) -> None:
    """ACK at end: each failure is a 5xx the queue retries; ACK now: one 202, then only the cron.
    Both resume from the checkpoint: every step's work committed once, every event once."""
    stack = flaky_stack
    at_end, now = create(stack, "alice", "end"), create(stack, "bob", "now")
    for job_id in (at_end, now):
        assert done(stack, job_id, 90)["status"] == "done"
        assert event_seqs(stack, job_id) == ALL
        assert [seq for seq, _, _ in step_runs(stack, job_id)] == list(range(1, 15))

    (task,) = tasks(stack, at_end)
    assert task["state"] == "succeeded" and task["last_status"] == 200
    assert task["dispatch_count"] >= 2, "a failed step must have been answered 5xx and retried"
    # (an execution that failed before committing a step leaves no record of its own)
    triggers = set(read_truth(stack.database_url, [at_end])[at_end].triggers)
    assert "queue-retry" in triggers and triggers <= {"dispatch", "queue-retry"}

    first, *by_cron = tasks(stack, now)
    assert first["dispatch_count"] == 1 and first["last_status"] == 202, "202 gave up the queue's retry"
    assert by_cron and all("-cron" in t["name"] for t in by_cron)
    triggers = set(read_truth(stack.database_url, [now])[now].triggers)
    assert "cron" in triggers and triggers <= {"dispatch", "cron"}


@pytest.fixture
def short_deadline_stack(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """The queue's dispatch deadline at its minimum (15 s real, 0.75 s scaled): shorter than a job."""
    monkeypatch.setenv("PROGRESSBENCH_RELAY_QUEUE", json.dumps({"dispatch_deadline_s": 15.0}))
    with running_stack(tmp_path, database_url, transports=("relay",), timing=TIMING) as running:
        yield running


def test_a_job_longer_than_the_dispatch_deadline_is_pushed_again_and_runs_twice(
    short_deadline_stack: Stack,
) -> None:
    """The queue stops waiting at the deadline and retries while the first push still runs the job;
    the handler resumes from the checkpoint beside it: events converge, the work is done twice."""
    stack = short_deadline_stack
    job_id = create(stack, "carol", "end")
    assert done(stack, job_id)["status"] == "done"
    assert event_seqs(stack, job_id) == ALL, "events converge by seq"
    (task,) = tasks(stack, job_id)
    assert task["dispatch_count"] >= 2
    truth = read_truth(stack.database_url, [job_id])[job_id]
    assert truth.ran_twice, f"no step ran twice: {truth.step_runs}"
    assert "queue-retry" in truth.triggers


@pytest.fixture
def narrow_stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """A worker instance that holds 2 requests at most (the 80 of Cloud Run, scaled down)."""
    with running_stack(
        tmp_path, database_url, transports=("relay",), timing=TIMING, worker_concurrency=2
    ) as running:
        yield running


def test_held_pushes_fill_the_instance_and_the_queue_backs_off_on_429(narrow_stack: Stack) -> None:
    """Five ACK-at-end jobs on a 2-slot instance: pushes beyond the held two get 429, the queue
    retries them after its backoff (and Retry-After), and every job still finishes once."""
    stack = narrow_stack
    ids = [create(stack, f"u{i}", "end") for i in range(5)]
    for job_id in ids:
        assert done(stack, job_id, 90)["status"] == "done"
        assert event_seqs(stack, job_id) == ALL
        assert [seq for seq, _, _ in step_runs(stack, job_id)] == list(range(1, 15))
    meters = stack.meters()
    assert meters["worker"].get("pb_rejected_total", 0) >= 1, meters["worker"]
    assert meters["queue"].get("pb_queue_retries_total", 0) >= 1
    statuses = [t["dispatch_count"] for job_id in ids for t in tasks(stack, job_id)]
    assert max(statuses) >= 2


def test_misdeployed_work_runs_in_the_api_request_and_long_jobs_die_silently(
    misdeployed_stack: Stack,
) -> None:
    """The fallback runs every job inside an API request: a short job "works" (in the wrong place),
    a long one is cut at the request timeout with no failure written, stuck ``running``."""
    stack = misdeployed_stack
    short = create(stack, "dave", "now", JobShape(step_seconds_min=2, step_seconds_max=2))  # ~1.4 s
    long = create(stack, "erin", "end")  # ~3 s, beyond the 2 s timeout
    assert done(stack, short)["status"] == "done"
    context = job_row(stack, short)["context"]
    assert (context["service"], context["kind"]) == ("api", "request")

    def abandoned() -> bool:
        with psycopg.connect(stack.database_url) as conn:
            row = conn.execute(
                "SELECT status = 'running' AND heartbeat_at < clock_timestamp() - interval '1 second' "
                "FROM jobs WHERE id = %s",
                (long,),
            ).fetchone()
        return bool(row and row[0])

    wait_for(abandoned, 30, "the long job's request to be cut")
    assert job_row(stack, long)["context"]["service"] == "api"
    assert event_seqs(stack, long)[-1] < SLOW.total_steps, "no terminal event: the failure went unwritten"
    assert tasks(stack, long) == [], "the queue never saw the job"
    truths = read_truth(stack.database_url, [short, long])
    assert truths[short].ran_outside("worker/worker-background")
    assert truths[long].ran_outside("worker/request")
