"""The ``sse`` stream's door for browsers: ``?token=``, the session cookie, CORS, ``?last_event_id=``.

An ``EventSource`` cannot send ``Authorization``; it can put a token in the
URL, carry a same-site cookie, and send ``Last-Event-ID`` only on its own
reconnects. Each way in is pinned here on a real stack, with the refusals a
stranger gets (401 with a reason, 404 for another's job) and the CORS
answers a page of an allowed origin — and only such a page — receives.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from progressbench.transports.sse.wire import Message, SSEParser

from progressbench.app.supervisor import Stack
from progressbench.core import identity
from tests.helpers import UNIT, run_process
from tests.integration.api_client import auth, sign_in
from tests.integration.conftest import running_stack

ORIGIN = "http://127.0.0.1:4173"
STRANGER = "http://127.0.0.1:9999"
#: Steps of 0.05 s at the test scale: a job of well under a second.
SHAPE = {"step_seconds_min": 1.0, "step_seconds_max": 1.0}


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("door"), module_database_url, transports=("sse",), cors_origins=(ORIGIN,)
    ) as running:
        yield running


def _api(stack: Stack) -> str:
    return stack.endpoints()["api"]


def _create(stack: Stack, owner: str) -> dict[str, Any]:
    api = _api(stack)
    body = {"seed": 3, "time_scale": stack.settings.timing.time_scale, "shape": SHAPE}
    answer = httpx.post(f"{api}/sse/jobs", json=body, headers=auth(api, owner), timeout=10 * UNIT)
    assert answer.status_code == 202, answer.text
    created: dict[str, Any] = answer.json()
    return created


def _read(
    stack: Stack,
    href: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> tuple[httpx.Response, list[Message]]:
    """The answer and every message of one GET of the stream, read to its end (the terminal event)."""
    messages: list[Message] = []
    with httpx.Client(base_url=_api(stack), timeout=30 * UNIT, cookies=cookies) as http:
        with http.stream("GET", href, params=params, headers=headers) as response:
            if response.status_code == 200:
                parser = SSEParser()
                for chunk in response.iter_bytes():
                    messages += [m for m in parser.feed(chunk) if isinstance(m, Message)]
            else:
                response.read()
    return response, messages


def _seqs(messages: list[Message]) -> list[int]:
    return [int(m.id) for m in messages if m.id is not None]


def test_the_job_token_in_the_query_opens_the_stream(door: Stack) -> None:
    """``?token=<job read token>`` without any header streams the whole job, as a header would."""
    created = _create(door, "q-owner")
    response, messages = _read(door, created["events_href"], params={"token": created["token"]})
    assert response.status_code == 200
    seqs = _seqs(messages)
    assert seqs == list(range(1, len(seqs) + 1)) and messages[-1].event == "done"


def test_a_query_token_must_be_a_valid_job_token_for_this_job(door: Stack) -> None:
    """An access token in the URL, a forged token and no credential are 401 with a reason; another
    job's token is 404 (nothing tells a stranger the job exists)."""
    created = _create(door, "q-victim")
    other = _create(door, "q-other")
    access = sign_in(_api(door), "q-victim")["access_token"]
    href = created["events_href"]
    cases = {
        "access": ({"token": access}, 401, "job's read token"),
        "forged": ({"token": created["token"][:-4] + "AAAA"}, 401, "invalid token"),
        "none": ({}, 401, "no credentials"),
        "other-job": ({"token": other["token"]}, 404, "job not found"),
    }
    for name, (params, status, reason) in cases.items():
        response, messages = _read(door, href, params=params)
        assert response.status_code == status, name
        assert reason in response.json()["detail"], (name, response.text)
        assert messages == []


def test_sign_in_sets_a_same_site_cookie_the_stream_accepts_for_its_owner_only(door: Stack) -> None:
    """The session cookie of sign-in is HttpOnly and SameSite=Lax; it reads its owner's job, not
    another user's (404), and a tampered cookie is 401 naming the cookie."""
    api = _api(door)
    owner, stranger = f"c-owner-{uuid.uuid4().hex[:6]}", f"c-stranger-{uuid.uuid4().hex[:6]}"
    created = _create(door, owner)
    sign_in(api, stranger)
    account = sign_in(api, owner)
    answer = httpx.post(
        f"{api}/auth/v1/token",
        params={"grant_type": "password"},
        json={"email": account["user"]["email"], "password": "pw-" + owner * 2},
        timeout=10 * UNIT,
    )
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{identity.SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
    value = answer.cookies[identity.SESSION_COOKIE]

    response, messages = _read(door, created["events_href"], cookies={identity.SESSION_COOKIE: value})
    assert response.status_code == 200 and messages[-1].event == "done"

    theirs = sign_in(api, stranger)["access_token"]
    response, _ = _read(door, created["events_href"], cookies={identity.SESSION_COOKIE: theirs})
    assert response.status_code == 404
    response, _ = _read(door, created["events_href"], cookies={identity.SESSION_COOKIE: value[:-3] + "xyz"})
    assert response.status_code == 401 and response.json()["detail"].startswith("session cookie:")


def test_last_event_id_as_a_query_parameter_for_a_fresh_page_load(door: Stack) -> None:
    """``?last_event_id=N`` resumes after N; the header, when the browser sends it on its own
    reconnect, wins over the URL's older value; a malformed one is 400."""
    created = _create(door, "l-owner")
    token = {"token": created["token"]}
    _, everything = _read(door, created["events_href"], params=token)
    total = _seqs(everything)[-1]
    _, after_two = _read(door, created["events_href"], params={**token, "last_event_id": "2"})
    assert _seqs(after_two) == list(range(3, total + 1))
    _, header_wins = _read(
        door,
        created["events_href"],
        params={**token, "last_event_id": "2"},
        headers={"last-event-id": str(total - 1)},
    )
    assert _seqs(header_wins) == [total]
    response, _ = _read(door, created["events_href"], params={**token, "last_event_id": "-1"})
    assert response.status_code == 400 and "Last-Event-ID" in response.json()["detail"]


def test_cors_answers_the_configured_origin_only(door: Stack) -> None:
    """A preflight from the configured origin is answered (methods, the resume header, credentials);
    one from another origin is refused; the stream and sign-in carry the origin's CORS headers."""
    created = _create(door, "o-owner")
    with httpx.Client(base_url=_api(door), timeout=10 * UNIT) as http:
        preflight = {
            "access-control-request-method": "GET",
            "access-control-request-headers": "last-event-id",
        }
        allowed = http.options(created["events_href"], headers={"origin": ORIGIN, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "last-event-id" in allowed.headers["access-control-allow-headers"].lower()
        refused = http.options(created["events_href"], headers={"origin": STRANGER, **preflight})
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        signin = http.post(
            "/auth/v1/token", params={"grant_type": "password"}, json={}, headers={"origin": ORIGIN}
        )
        assert signin.headers["access-control-allow-origin"] == ORIGIN
    response, _ = _read(
        door, created["events_href"], params={"token": created["token"]}, headers={"origin": ORIGIN}
    )
    assert response.headers["access-control-allow-origin"] == ORIGIN
    response, _ = _read(
        door, created["events_href"], params={"token": created["token"]}, headers={"origin": STRANGER}
    )
    assert "access-control-allow-origin" not in response.headers


def test_without_configured_origins_there_is_no_cors(tmp_path: Path, database_url: str) -> None:
    """``cors_origins`` empty (the default of a bare stack): no CORS headers, a preflight is 405."""
    with running_stack(tmp_path, database_url, transports=("sse",)) as bare:
        answer = httpx.options(
            f"{_api(bare)}/sse/jobs/{uuid.uuid4()}/events",
            headers={"origin": ORIGIN, "access-control-request-method": "GET"},
            timeout=10 * UNIT,
        )
    assert answer.status_code == 405
    assert "access-control-allow-origin" not in answer.headers


def test_the_cli_says_what_is_missing_for_browser_phones(tmp_path: Path) -> None:
    """With no Chromium on PATH, ``run --transports sse:browser`` stops before anything starts with
    one line naming Chromium and how to install it (exit 2, no traceback, no results)."""
    out = tmp_path / "results"
    env = {**os.environ, "PATH": str(tmp_path)}
    done = run_process(
        [sys.executable, "-m", "progressbench", "run", "--transports", "sse:browser", "--out", str(out)],
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sse:browser" in done.stderr and "apt-get install chromium" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
