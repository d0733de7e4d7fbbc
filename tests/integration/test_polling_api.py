"""The polling transport and the API on a real stack: states, cursor reads, conditional GETs, bad input.

The tests share one stack (``module_stack``): each creates its own jobs and
none kills an instance.
"""

from __future__ import annotations

import time

import httpx
import pytest

from progressbench.app.session import run_session
from progressbench.app.supervisor import Stack
from progressbench.core.config import JobShape, Timing
from tests.helpers import UNIT
from tests.integration.api_client import auth, create_job, event_seqs, wait_status
from tests.integration.conftest import SCALE
from tests.integration.sse_helpers import progress_seqs, score, session_spec

# 14 steps of 0.1 s at scale 0.05; the phone polls every 0.35 s, so most steps pass between polls.
QUICK_STEPS = JobShape(step_seconds_min=2.0, step_seconds_max=2.0)
SLOW_POLLS = Timing(time_scale=SCALE, poll_interval_s=7.0)


def test_status_poll_returns_the_current_state_only(module_stack: Stack, http: httpx.Client) -> None:
    """``GET href`` is the job as it is now: status, the last step reached, the result when done."""
    stack = module_stack
    job = create_job(stack)
    api = stack.endpoints()["api"]
    headers = {"authorization": f"Bearer {job['token']}"}
    wait_status(stack, job["job_id"], {"done"}, timeout=30)
    body = http.get(api + job["href"], headers=headers).json()
    assert "events" not in body
    assert body["status"] == "done" and body["terminal"] and body["current_step"] == 14
    assert body["step"]["seq"] == 15 and body["step"]["kind"] == "done"
    assert body["result"] == {"images": 14}


@pytest.mark.smoke
async def test_state_poller_coalesces_steps_between_polls_and_log_poller_sees_all(
    module_stack: Stack,
) -> None:
    """Polling slower than the steps: ``polling`` shows fewer steps, always increasing, ends on the
    terminal state; the steps it missed are coalesced, none lost. ``polling:log`` shows them all."""
    stack = module_stack
    api = stack.endpoints()["api"]
    state = await run_session(session_spec("polling", "coalesce", api, SLOW_POLLS, QUICK_STEPS))
    log = await run_session(session_spec("polling:log", "cursor", api, SLOW_POLLS, QUICK_STEPS))

    assert state.outcome == "terminal" and state.coalescing
    seen = progress_seqs(state)
    assert seen == sorted(set(seen)) and seen[-1] == 15 and len(seen) < 15
    row = score(stack.database_url, state)
    assert row.coalesced == 15 - len(seen) > 0
    assert row.lost == 0 and row.duplicates == 0 and row.terminal_received
    assert row.events_received == len(seen)

    assert log.outcome == "terminal" and not log.coalescing
    assert progress_seqs(log) == list(range(1, 16))
    lrow = score(stack.database_url, log)
    assert (lrow.coalesced, lrow.lost, lrow.events_received) == (0, 0, 15)


def test_job_runs_to_done_and_poll_reads_every_event(module_stack: Stack, http: httpx.Client) -> None:
    """202 {href, token}; polling after a cursor (``polling:log``) returns each event once, in order."""
    stack = module_stack
    job = create_job(stack)
    api = stack.endpoints()["api"]
    headers = {"authorization": f"Bearer {job['token']}"}
    wait_status(stack, job["job_id"], {"done"}, timeout=30)
    first = http.get(api + job["href"], params={"after": 0}, headers=headers)
    assert first.status_code == 200
    body = first.json()
    assert [e["seq"] for e in body["events"]] == list(range(1, 16)) == event_seqs(stack, job["job_id"])
    assert body["events"][-1]["kind"] == "done" and body["terminal"]
    later = http.get(api + job["href"], params={"after": 10}, headers=headers)
    assert [e["seq"] for e in later.json()["events"]] == [11, 12, 13, 14, 15]


def test_unchanged_job_answers_304_with_its_etag(module_stack: Stack, http: httpx.Client) -> None:
    """If-None-Match with the current ETag gets 304 and no body; running jobs send Retry-After."""
    stack = module_stack
    job = create_job(stack, step_seconds_min=20, step_seconds_max=20)  # 1 s steps at scale 0.05
    # Dispatch moves the job pending -> running (attempt 0 -> 1); after that nothing changes
    # for a whole 1 s step, so the two reads below see the same job.
    wait_status(stack, job["job_id"], {"running"}, timeout=10)
    api = stack.endpoints()["api"]
    headers = {"authorization": f"Bearer {job['token']}"}
    first = http.get(api + job["href"], headers=headers)
    assert first.status_code == 200 and first.headers["retry-after"] == "0.050"
    again = http.get(api + job["href"], headers={**headers, "if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def db_reads(http: httpx.Client, api: str) -> float:
    """The API's store reads so far (its /metrics, the same meter the cost model reads)."""
    for line in http.get(api + "/metrics").text.splitlines():
        if line.startswith('pb_db_reads_total{service="api"}'):
            return float(line.split()[-1])
    raise AssertionError("pb_db_reads_total not exported")


@pytest.mark.smoke
def test_an_unchanged_poll_is_answered_from_memory_and_a_change_is_never_hidden(
    module_stack: Stack, http: httpx.Client
) -> None:
    """A 304 for a job the notify feed says has not moved touches no database; once the job
    moves (its next step, or a status change without an event) the same ETag gets a 200."""
    stack = module_stack
    job = create_job(stack, step_seconds_min=40, step_seconds_max=40)  # 2 s steps at scale 0.05
    wait_status(stack, job["job_id"], {"running"}, timeout=10)
    api = stack.endpoints()["api"]
    headers = {"authorization": f"Bearer {job['token']}"}
    first = http.get(api + job["href"], headers=headers)
    second = http.get(api + job["href"], headers={**headers, "if-none-match": first.headers["etag"]})
    etag = second.headers["etag"]  # the first read may predate the feed; this one is remembered
    before = db_reads(http, api)
    answers = [
        http.get(api + job["href"], headers={**headers, "if-none-match": etag}).status_code for _ in range(20)
    ]
    spent = db_reads(http, api) - before
    assert answers.count(304) >= 15, answers  # a 2 s step: at most one change in these 20 polls
    assert spent <= 3 * answers.count(200) + 5, f"{answers.count(304)} unchanged polls: {spent} reads"
    step = first.json()["current_step"]
    deadline = time.monotonic() + 30 * UNIT
    while time.monotonic() < deadline:  # the job moves on: the old ETag must stop matching
        answer = http.get(api + job["href"], headers={**headers, "if-none-match": etag})
        if answer.status_code == 200:
            assert answer.json()["current_step"] > step or answer.json()["status"] != "running"
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the job moved on but its old ETag still got 304")
    # a stranger's token never gets the remembered answer
    bob = auth(api, "bob-etag")
    assert http.get(api + job["href"], headers={**bob, "if-none-match": etag}).status_code == 404


def test_bad_input_gets_clear_errors_and_no_service_dies(module_stack: Stack, http: httpx.Client) -> None:
    """Unknown ids, other people's tokens, malformed JSON: clear statuses, no data, no crash."""
    stack = module_stack
    api = stack.endpoints()["api"]
    alice = create_job(stack, owner="alice")
    bob = create_job(stack, owner="bob")
    bob_headers = {"authorization": f"Bearer {bob['token']}"}

    foreign = http.get(api + alice["href"], headers=bob_headers)
    assert foreign.status_code == 404 and "events" not in foreign.text
    assert http.get(api + alice["href"]).status_code == 401
    assert http.get(api + alice["href"], headers={"authorization": "Bearer forged"}).status_code == 401
    assert http.get(api + "/polling/jobs/not-a-uuid", headers=bob_headers).status_code == 404
    unknown = "/polling/jobs/00000000-0000-0000-0000-000000000000"
    assert http.get(api + unknown, headers=bob_headers).status_code == 404
    assert http.get(api + bob["href"], params={"after": -1}, headers=bob_headers).status_code == 422

    signed_in = auth(api, "bob")
    malformed = http.post(
        api + "/polling/jobs",
        content=b'{"seed": 1,',
        headers={"content-type": "application/json", **signed_in},
    )
    assert malformed.status_code == 422
    assert malformed.json()["detail"] == "invalid request" and "JSON" in str(malformed.json()["problems"])
    # The owner is whoever signed in: a body that names one is refused, not obeyed.
    wrong_shape = http.post(
        api + "/polling/jobs", json={"owner": "alice", "time_scale": -1}, headers=signed_in
    )
    assert wrong_shape.status_code == 422
    assert any("owner" in p for p in wrong_shape.json()["problems"])
    assert http.post(api + "/polling/jobs", json={}).status_code == 401

    assert all(i.alive() for s in stack.services.values() for i in s.instances)
    assert http.get(api + "/healthz").json()["status"] == "ok"
    assert http.get(api + bob["href"], headers=bob_headers).status_code == 200
