"""``sse`` and ``sse-naive`` on a real stack, with connections cut, blackholed, timed out and killed.

Jobs here have 14 steps of 0.3 s (6 s unscaled at time scale 0.05), the
server heartbeats every 0.75 s and the client's idle watchdog fires after
three silent heartbeats (2.25 s). Tests that only watch share one stack
(``module_stack``); the request-timeout test needs a stack of its own timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from progressbench.app.session import run_session
from progressbench.app.supervisor import Stack
from progressbench.core.config import JobShape, Timing
from progressbench.core.events import SessionRecord
from tests.helpers import UNIT
from tests.integration.api_client import auth as signed_in
from tests.integration.api_client import event_seqs, job_row
from tests.integration.conftest import SCALE, running_stack
from tests.integration.sse_helpers import Forwarder, progress_seqs, score, session_spec, wait_for_events

SHAPE = JobShape(step_seconds_min=6.0, step_seconds_max=6.0)
ALL_SEQS = list(range(1, SHAPE.total_steps + 2))  # steps + the terminal event


async def _watch_and_break(
    stack: Stack, transport: str, owner: str, fault: str
) -> tuple[Forwarder, SessionRecord]:
    timing = stack.settings.timing
    forwarder = Forwarder.to_url(stack.endpoints()["api"])
    url = await forwarder.start()
    spec = session_spec(transport, owner, url, timing, SHAPE)
    task = asyncio.create_task(run_session(spec))
    try:
        await wait_for_events(stack.database_url, owner, 3, timeout=10)
        if fault == "cut":
            forwarder.cut(outage_s=1.0, server_learns_after_s=1.0)
        else:
            forwarder.freeze()
        record = await asyncio.wait_for(task, timeout=30 * UNIT)
    finally:
        await forwarder.close()
    return forwarder, record


@pytest.mark.parametrize("fault", [pytest.param("cut", marks=pytest.mark.smoke), "freeze"])
async def test_resumable_replays_the_gap_and_naive_restarts_or_hangs(module_stack: Stack, fault: str) -> None:
    """After a cut or a blackhole, ``sse`` delivers every event once in order with one
    replayed-complete resume. ``sse-naive`` after a cut shows the error and POSTs a *new* job:
    a second execution, progress back to step 1, the first job's later events never seen while
    it runs on to its end unobserved. After a blackhole it hangs with no error (no heartbeat,
    no idle watchdog) while its job finishes unseen."""
    stack = module_stack
    (_, resumable), (_, naive) = await asyncio.gather(
        _watch_and_break(stack, "sse", f"res-{fault}", fault),
        _watch_and_break(stack, "sse-naive", f"naive-{fault}", fault),
    )
    assert isinstance(resumable, SessionRecord) and isinstance(naive, SessionRecord)
    row = score(stack.database_url, resumable)
    assert resumable.outcome == "terminal", resumable.error
    assert progress_seqs(resumable) == ALL_SEQS
    assert (row.lost, row.duplicates, row.out_of_order) == (0, 0, 0)
    assert row.disconnects == 1 and row.reconnects == 1 and row.resumes == 1
    assert row.resume_replayed_complete == 1
    assert not row.duplicate_execution
    if fault == "freeze":
        assert any(o.detail == "idle watchdog" for o in resumable.observations if o.type == "disconnected")

    nrow = score(stack.database_url, naive)
    first = job_row(stack, str(naive.job_id))
    if fault == "freeze":
        assert naive.outcome == "deadline" and not nrow.terminal_received
        assert nrow.disconnects == 0 and not naive.extra_job_ids, "nothing told the phone"
        assert first["status"] == "done", "the job ran on to its end with nobody listening"
        assert nrow.lost == nrow.events_expected - nrow.events_received > 0
        assert nrow.silent_stall and nrow.executions == 1
        return
    assert naive.outcome == "terminal", naive.error
    assert len(naive.extra_job_ids) >= 1 and naive.extra_job_ids[0] != naive.job_id
    assert any(o.type == "resubmitted" for o in naive.observations)
    # the first job ran on to its end with nobody listening: every event after the cut is lost
    assert first["status"] == "done"
    assert nrow.events_expected == len(ALL_SEQS)
    assert nrow.lost == nrow.events_expected - nrow.events_received > 0
    assert nrow.resume_restarted == nrow.resumes >= 1  # nothing replayed: a new job from step 1
    assert nrow.executions == 1 + len(naive.extra_job_ids) and nrow.duplicate_execution
    assert nrow.progress_regressions >= 1  # the bar went back to step 1
    second = [
        o.seq for o in naive.observations if o.type == "progress" and o.job_id == naive.extra_job_ids[-1]
    ]
    assert second == ALL_SEQS, "the second execution streams its own events from step 1"


async def test_cancel_variant_abandons_the_job_when_the_client_goes(module_stack: Stack) -> None:
    """``sse-naive:cancel``: the cut request takes its job down with it (failed, no terminal event,
    steps left undone); the retry is a new job that finishes."""
    stack = module_stack
    _, naive = await _watch_and_break(stack, "sse-naive:cancel", "naive-cancel", "cut")
    assert naive.outcome == "terminal", naive.error
    assert naive.extra_job_ids and naive.job_id not in naive.extra_job_ids
    first = job_row(stack, str(naive.job_id))
    assert first["status"] == "failed" and first["error"].startswith("abandoned")
    seqs = event_seqs(stack, str(naive.job_id))
    assert seqs and seqs[-1] < SHAPE.total_steps, "the abandoned job did not run on"
    assert job_row(stack, naive.extra_job_ids[-1])["status"] == "done"
    nrow = score(stack.database_url, naive)
    assert nrow.resume_restarted >= 1 and nrow.executions == 1 + len(naive.extra_job_ids)
    assert nrow.job_status == "failed" and nrow.lost == len(seqs) - nrow.events_received


@pytest.fixture
def short_timeout_stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    timing = Timing(time_scale=SCALE, request_timeout_s=20.0, session_deadline_s=200.0)  # 1 s, 10 s
    with running_stack(tmp_path, database_url, timing=timing, transports=("sse", "sse-naive")) as running:
        yield running


async def test_request_timeout_shorter_than_the_job(short_timeout_stack: Stack) -> None:
    """Streams cut at 1 s: ``sse`` finishes across several streams without loss; ``sse-naive``
    never finishes: every retry is a new job cut again at 1 s."""
    stack = short_timeout_stack
    timing = stack.settings.timing
    api = stack.endpoints()["api"]
    try:
        async with asyncio.timeout(60 * UNIT):
            resumable, naive = await asyncio.gather(
                run_session(session_spec("sse", "res-timeout", api, timing, SHAPE)),
                run_session(session_spec("sse-naive", "naive-timeout", api, timing, SHAPE)),
            )
    except TimeoutError:
        raise AssertionError("the sessions outlived their own 10 s deadline by far") from None
    row = score(stack.database_url, resumable)
    assert resumable.outcome == "terminal" and progress_seqs(resumable) == ALL_SEQS
    assert row.lost == 0 and row.duplicates == 0
    assert row.disconnects >= 3 and row.resume_replayed_complete == row.reconnects
    nrow = score(stack.database_url, naive)
    assert naive.outcome == "deadline" and not nrow.terminal_received
    assert naive.extra_job_ids and nrow.resume_restarted >= 1
    # Every POST is an execution of its own; the last may be cut by the deadline before its first step.
    assert 2 <= len(naive.extra_job_ids) <= nrow.executions <= 1 + len(naive.extra_job_ids)
    assert max(progress_seqs(naive)) < SHAPE.total_steps, "no stream outlived the timeout"


@pytest.mark.smoke
async def test_event_stream_refuses_bad_requests_and_replays_finished_jobs(module_stack: Stack) -> None:
    """401/404 without a stream, 400 for a malformed Last-Event-ID; a finished job answers
    a late reconnect with its remaining events and the terminal one."""
    stack = module_stack
    api = stack.endpoints()["api"]
    async with httpx.AsyncClient(base_url=api, timeout=10 * UNIT) as http:
        body = {
            "time_scale": SCALE,
            "shape": {"step_seconds_min": 0.5, "step_seconds_max": 0.5},
        }
        created = (await http.post("/sse/jobs", json=body, headers=signed_in(api, "alice-late"))).json()
        other = (await http.post("/sse/jobs", json=body, headers=signed_in(api, "bob"))).json()
        href = created["events_href"]
        auth = {"authorization": f"Bearer {created['token']}"}
        assert (await http.get(href)).status_code == 401
        assert (
            await http.get(href, headers={"authorization": f"Bearer {other['token']}"})
        ).status_code == 404
        bad = await http.get(href, headers={**auth, "last-event-id": "12abc"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["detail"]
        assert "text/event-stream" not in bad.headers.get("content-type", "")
        await wait_for_events(stack.database_url, "alice-late", SHAPE.total_steps + 1, timeout=20)
        late = await http.get(href, headers={**auth, "last-event-id": "12"})
        assert late.status_code == 200
        ids = [line.split(":", 1)[1].strip() for line in late.text.splitlines() if line.startswith("id:")]
        assert ids == ["13", "14", "15"] and "event: done" in late.text
