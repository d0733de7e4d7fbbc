"""Tiny synchronous helpers for talking to a running stack in tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

from progressbench.app.supervisor import Stack
from tests.helpers import UNIT, wait_for

_accounts: dict[tuple[str, str], dict[str, Any]] = {}


def sign_in(api: str, name: str) -> dict[str, Any]:
    """A session (GoTrue shape) of the test user ``name`` on the API at ``api``: signed up once, cached."""
    key = (api, name)
    if key not in _accounts:
        email = f"{name}.{uuid.uuid4().hex[:8]}@tests.progressbench.test"
        response = httpx.post(
            f"{api}/auth/v1/signup", json={"email": email, "password": "pw-" + name * 2}, timeout=10 * UNIT
        )
        assert response.status_code == 200, response.text
        _accounts[key] = response.json()
    return _accounts[key]


def auth(api: str, name: str) -> dict[str, str]:
    """The Authorization header of the test user ``name``."""
    return {"authorization": f"Bearer {sign_in(api, name)['access_token']}"}


def user_id(api: str, name: str) -> str:
    return str(sign_in(api, name)["user"]["id"])


def create_job(stack: Stack, owner: str = "alice", seed: int = 1, **shape: Any) -> dict[str, Any]:
    """POST a polling job as the signed-in test user ``owner`` (202 asserted); ``shape``: JobShape fields."""
    body: dict[str, Any] = {"seed": seed, "time_scale": stack.settings.timing.time_scale}
    if shape:
        body["shape"] = shape
    api = stack.endpoints()["api"]
    response = httpx.post(f"{api}/polling/jobs", json=body, headers=auth(api, owner), timeout=10 * UNIT)
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()
    return data


def job_row(stack: Stack, job_id: str) -> dict[str, Any]:
    with psycopg.connect(stack.database_url) as conn:
        cur = conn.execute(
            "SELECT status, current_step, attempt, execution_context, total_steps, error, lease_owner "
            "FROM jobs WHERE id = %s",
            (job_id,),
        )
        row = cur.fetchone()
    assert row is not None
    keys = ("status", "current_step", "attempt", "context", "total_steps", "error", "lease_owner")
    return dict(zip(keys, row, strict=True))


def event_seqs(stack: Stack, job_id: str) -> list[int]:
    with psycopg.connect(stack.database_url) as conn:
        return [
            r[0] for r in conn.execute("SELECT seq FROM job_events WHERE job_id = %s ORDER BY seq", (job_id,))
        ]


def step_runs(stack: Stack, job_id: str) -> list[tuple[int, int, str]]:
    with psycopg.connect(stack.database_url) as conn:
        return [
            tuple(r)
            for r in conn.execute(  # type: ignore[misc]
                "SELECT seq, attempt, instance FROM step_runs WHERE job_id = %s ORDER BY seq, id", (job_id,)
            )
        ]


def wait_status(stack: Stack, job_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
    """The job's row once its status is one of ``statuses`` (``timeout`` is scaled by UNIT)."""

    def reached() -> dict[str, Any] | None:
        row = job_row(stack, job_id)
        return row if row["status"] in statuses else None

    return wait_for(reached, timeout, f"job {job_id} to reach {statuses}")
