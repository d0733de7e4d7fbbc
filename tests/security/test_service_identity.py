"""Probe 1 of issue 13: a phone minting a service token, and the queue pushing anywhere.

Before: ``POST /polling/jobs {"owner": "service:api"}`` answered a token whose
``sub`` passed every service check — publish a forged ``done`` into another
user's room, create a queue task toward any URL (the queue then sent that URL
a valid OIDC token for the worker), call the worker's ``/run``. Now services
verify tokens signed with a key no phone-facing code signs with, made for
them (``aud``), and the queue pushes only to its configured targets.
"""

from __future__ import annotations

import uuid

import httpx

from progressbench.app.supervisor import Stack
from progressbench.core import identity
from tests.helpers import UNIT
from tests.security.conftest import account, create


def test_no_phone_token_passes_as_a_service(full_stack: Stack) -> None:
    """Whatever token a phone can get — by naming ``service:api`` as owner, its access token, its
    job's token — rooms publish, queue task creation and the worker's ``/run`` refuse it."""
    ends = full_stack.endpoints()
    api = ends["api"]
    alice, mallory = account(api, "alice"), account(api, "mallory")
    victim = create(api, "/relay/jobs", alice)
    assert victim.status_code == 202, victim.text
    room = victim.json()["room"]

    minted = create(api, "/polling/jobs", mallory, owner="service:api")
    held: dict[str, str] = {}
    if minted.status_code == 202:
        held["minted"] = minted.json()["token"]
    if mallory.token:
        held["access"] = mallory.token
        own = create(api, "/polling/jobs", mallory)
        assert own.status_code == 202, own.text
        held["own-job"] = own.json()["token"]

    forged_done = {"seq": 999, "kind": "done", "message": "forged", "owner": alice.owner, "payload": {}}
    task = {
        "name": f"evil-{uuid.uuid4().hex[:8]}",
        "url": "http://127.0.0.1:9/collect",
        "audience": full_stack.services["worker"].config.peers["worker"],
        "body": {},
    }
    answers: dict[str, int] = {}
    with httpx.Client(timeout=10 * UNIT) as http:
        for name, token in held.items():
            headers = {"authorization": f"Bearer {token}"}
            answers[f"{name} → rooms publish"] = http.post(
                f"{ends['rooms']}{room}", json=forged_done, headers=headers
            ).status_code
            answers[f"{name} → queue CreateTask"] = http.post(
                f"{ends['queue']}/v2/tasks", json=task, headers=headers
            ).status_code
            answers[f"{name} → worker /run"] = http.post(
                f"{ends['worker']}/run", json={"job_id": victim.json()["job_id"]}, headers=headers
            ).status_code
    assert held and all(status in (401, 403) for status in answers.values()), answers
    assert minted.status_code == 422, "a body may not name the owner (it is the verified user)"


def test_the_queue_pushes_only_to_its_targets_with_their_audience(full_stack: Stack) -> None:
    """Even a genuine service token cannot make the queue push to an arbitrary listener, nor sign
    an OIDC token for an audience other than the target's; a token for another service is 403."""
    ends = full_stack.endpoints()
    config = full_stack.services["queue"].config
    worker = config.peers["worker"]
    token = identity.issue_service(config.service_secret, "queue")
    headers = {"authorization": f"Bearer {token}"}

    def create_task(url: str, audience: str | None, bearer: dict[str, str] = headers) -> int:
        job = {"job_id": str(uuid.uuid4())}  # unknown: the worker answers "missing" and the task ends
        body: dict[str, object] = {"name": f"t-{uuid.uuid4().hex[:8]}", "url": url, "body": job}
        if audience is not None:
            body["audience"] = audience
        return httpx.post(
            f"{ends['queue']}/v2/tasks", json=body, headers=bearer, timeout=10 * UNIT
        ).status_code

    assert create_task("http://127.0.0.1:9/collect", worker) == 403
    assert create_task(f"{worker}.evil.example/relay/tasks/run", None) == 403
    assert create_task(f"{worker}/relay/tasks/run", "https://elsewhere.example") == 400
    rooms_token = identity.issue_service(config.service_secret, "rooms")
    assert create_task(f"{worker}/relay/tasks/run", None, {"authorization": f"Bearer {rooms_token}"}) == 403
    assert create_task(f"{worker}/relay/tasks/run", None) == 200
