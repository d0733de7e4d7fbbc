"""Probe 2 of issue 13: taking over any job through ``sse-naive``'s client-chosen job id.

Before: ``POST /sse-naive/jobs {"owner": "<guess>", "job_id": "<any job>"}``
answered a token for that job, rewound it (a finished job went back to
``pending``), and a wrong owner got 409 — which confirmed the id existed.
Now job ids are the server's: a body naming one is refused, the
``Idempotency-Key`` header no longer picks the job, and every POST is a new
job of the signed-in user.
"""

from __future__ import annotations

import json

import httpx
import psycopg

from progressbench.app.supervisor import Stack
from tests.helpers import UNIT, wait_for
from tests.security.conftest import SCALE, Account, account, create


def _status(stack: Stack, job_id: str) -> tuple[str, int]:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT status, current_step FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def _naive_post(api: str, who: Account, body: dict[str, object], key: str) -> tuple[int, str | None]:
    """POST to sse-naive and read up to its ``created`` event: (status, the job id it names)."""
    headers = {**who.headers, "idempotency-key": key}
    with (
        httpx.Client(timeout=10 * UNIT) as http,
        http.stream(
            "POST", f"{api}/sse-naive/jobs", json={"time_scale": SCALE, **body}, headers=headers
        ) as response,
    ):
        if response.status_code != 200:
            return response.status_code, None
        for line in response.iter_lines():
            if line.startswith("data:"):
                return 200, str(json.loads(line[5:])["job_id"])
    return 200, None


def test_a_client_cannot_name_the_job_it_runs(full_stack: Stack) -> None:
    """Naming a finished job of another user (body or Idempotency-Key) neither hands it over,
    nor rewinds it, nor confirms that it exists."""
    api = full_stack.endpoints()["api"]
    alice, mallory = account(api, "alice"), account(api, "mallory")
    created = create(api, "/polling/jobs", alice, shape={"step_seconds_min": 0.2, "step_seconds_max": 0.2})
    assert created.status_code == 202, created.text
    victim = created.json()["job_id"]
    wait_for(lambda: _status(full_stack, victim)[0] == "done" or None, 30, "alice's job to finish")
    before = _status(full_stack, victim)

    named = _naive_post(api, mallory, {"owner": alice.owner, "job_id": victim}, victim)
    by_key = _naive_post(api, mallory, {} if mallory.token else {"owner": mallory.name}, victim)

    assert _status(full_stack, victim) == before, "the victim's finished job was rewound"
    assert named[1] != victim and by_key[1] != victim, "a stream of the victim's job was handed over"
    assert named[0] == 422, "a body naming the job id is refused"
    assert by_key[0] == 200 and by_key[1] is not None, "the header is ignored: a new job of the caller's"
