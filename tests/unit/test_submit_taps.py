"""Creating a job the way the app's user does: a failed tap is an error they see, then they tap again."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from progressbench.transports.http import SUBMIT_TAPS, submit_job

from progressbench.core.config import Timing
from progressbench.core.errors import TransportError
from progressbench.core.events import Observation
from progressbench.core.ledger import account, summarize
from tests.unit.test_ledger import JOB, prog, record, truth

SESSION = {"access_token": "t", "refresh_token": "r", "expires_at": 9e12, "user": {"id": "u"}}


def api(answers: list[object]) -> tuple[httpx.AsyncClient, list[str]]:
    """A phone's client whose job POSTs get ``answers`` in turn (an exception is raised, a code answered)."""
    posts: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/auth/v1/"):
            return httpx.Response(200, json=SESSION)
        posts.append(request.headers.get("idempotency-key", ""))
        answer = answers[len(posts) - 1]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, int)
        body = {"job_id": f"job-{len(posts)}", "token": "jt"} if answer == 202 else {"error": "x"}
        return httpx.Response(answer, content=json.dumps(body))

    return httpx.AsyncClient(base_url="http://api.test", transport=httpx.MockTransport(handle)), posts


def submit(http: httpx.AsyncClient, delays: list[tuple[float, float]], phone: str) -> object:
    def draw(low: float, high: float) -> float:
        delays.append((low, high))
        return 0.0

    return submit_job(http, "/jobs", {}, lambda _: 0.0, phone=phone, timing=Timing(time_scale=0.5), draw=draw)


def test_a_cut_post_is_an_error_the_user_sees_then_a_new_post_without_a_key() -> None:
    """A read timeout may have created the job: the person taps again after 5-30 s (scaled), no key."""
    http, posts = api([httpx.ReadTimeout("cut"), 503, 202])
    delays: list[tuple[float, float]] = []
    created = asyncio.run(submit(http, delays, "tap-a"))  # type: ignore[arg-type]
    assert created["job_id"] == "job-3" and len(posts) == 3 and set(posts) == {""}
    assert [f.name for f in created.findings()] == ["submit-failed", "submit-failed"]
    assert created.failed == ("create job: ReadTimeout", "create job answered 503")
    assert delays == [(2.5, 15.0), (2.5, 15.0)]


def test_the_user_gives_up_after_three_failed_taps_and_a_refusal_is_final() -> None:
    http, posts = api([httpx.RemoteProtocolError("reset")] * SUBMIT_TAPS + [202])
    with pytest.raises(TransportError, match="gave up after 3 failed taps"):
        asyncio.run(submit(http, [], "tap-b"))  # type: ignore[arg-type]
    assert len(posts) == SUBMIT_TAPS
    http, posts = api([403, 202])
    with pytest.raises(TransportError, match="answered 403"):
        asyncio.run(submit(http, [], "tap-c"))  # type: ignore[arg-type]
    assert len(posts) == 1


def test_a_connection_never_made_is_retried_without_the_user_seeing_it() -> None:
    http, posts = api([httpx.ConnectError("refused"), 202])
    created = asyncio.run(submit(http, [], "tap-d"))  # type: ignore[arg-type]
    assert created.failed == () and created["job_id"] == "job-2" and len(posts) == 2


def test_sessions_that_gave_up_count_in_terminal_ratio_and_not_in_job_terminal_ratio() -> None:
    """The user's outcome counts every session; the transport's share only the sessions with a job."""
    done, _ = account(
        record([prog(s, 100 * s + 5, "done" if s == 5 else "step") for s in range(1, 6)]), {JOB: truth()}
    )
    gave_up, _ = account(
        record(
            [Observation(type="finding", wall_ns=10, mono_ns=10, kind="submit-failed")],
            job_id=None,
            outcome="error",
            error="gave up",
        ),
        {},
    )
    cell = summarize("polling", "tunnel", [done, gave_up], [])
    assert (cell.terminal_ratio, cell.job_terminal_ratio, cell.gave_up_at_submit) == (0.5, 1.0, 1)
