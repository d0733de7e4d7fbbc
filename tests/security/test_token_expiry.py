"""Item 11 of issue 13: a JWT without ``exp`` must be refused, not accepted forever.

Before: the API's token check accepted a correctly signed token with no
``exp`` claim — a token that never expires. Now ``exp`` is required of job
read tokens, access tokens and service tokens alike.
"""

from __future__ import annotations

import time
import uuid

import httpx
import jwt

from progressbench.app.supervisor import Stack
from progressbench.core import identity
from tests.helpers import UNIT
from tests.security.conftest import account, create


def test_tokens_without_exp_are_refused(full_stack: Stack) -> None:
    """A job token, an access token and a service token, each well signed but without ``exp``."""
    api = full_stack.endpoints()["api"]
    alice = account(api, "alice")
    created = create(api, "/polling/jobs", alice)
    assert created.status_code == 202, created.text
    job = created.json()
    now = int(time.time())
    job_claims = {
        "sub": alice.owner,
        "role": "authenticated",
        "aud": "authenticated",
        "job_id": job["job_id"],
    }
    forever_job = jwt.encode({**job_claims, "iat": now}, full_stack.secret, algorithm="HS256")
    with_exp = jwt.encode({**job_claims, "iat": now, "exp": now + 60}, full_stack.secret, algorithm="HS256")
    forever_access = jwt.encode(
        {
            "iss": identity.AUTH_ISSUER,
            "sub": alice.user_id or alice.name,
            "aud": "authenticated",
            "role": "authenticated",
            "session_id": str(uuid.uuid4()),
            "iat": now,
        },
        full_stack.secret,
        algorithm="HS256",
    )
    service_secret = getattr(full_stack.services["worker"].config, "service_secret", full_stack.secret)
    forever_service = jwt.encode(
        {"iss": identity.SERVICE_ISSUER, "sub": "service:api", "aud": "worker", "iat": now},
        service_secret,
        algorithm="HS256",
    )
    with httpx.Client(base_url=api, timeout=10 * UNIT) as http:
        status = f"/polling/jobs/{job['job_id']}"
        assert http.get(status, headers={"authorization": f"Bearer {with_exp}"}).status_code == 200
        read = http.get(status, headers={"authorization": f"Bearer {forever_job}"}).status_code
        made = http.post(
            "/polling/jobs", json={"seed": 1}, headers={"authorization": f"Bearer {forever_access}"}
        ).status_code
        run = httpx.post(
            f"{full_stack.endpoints()['worker']}/run",
            json={"job_id": job["job_id"]},
            headers={"authorization": f"Bearer {forever_service}"},
            timeout=10 * UNIT,
        ).status_code
    assert (read, made, run) == (401, 401, 401)
