"""relay end to end: queue push with OIDC, both ACK modes under SIGKILL, rooms and their tokens.

Tests that kill a service get a stack of their own; the token and CGNAT tests
share one (``relay_stack``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from progressbench.transports.relay.client import RelayWatcher
from progressbench.transports.relay.queue.oidc import SigningKey, id_token_claims
from progressbench.transports.relay.server import RUN_PATH
from progressbench.transports.types import ClientSettings, JobRequest
from psycopg.types.json import Jsonb
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from progressbench.app.supervisor import Stack
from progressbench.core.config import JobShape
from progressbench.core.events import ClientEvent, Disconnected, Progress, Resumed, Submitted
from tests.helpers import UNIT, wait_until
from tests.integration.api_client import auth, event_seqs, job_row, step_runs
from tests.integration.conftest import SCALE, running_stack

# 14 steps of 0.2-0.25 s at scale 0.05: a ~3 s job, slow enough to kill mid-way.
SLOW = JobShape(step_seconds_min=4, step_seconds_max=5)
ALL = list(range(1, 16))


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """A relay stack of the test's own (it kills instances)."""
    with running_stack(tmp_path, database_url, transports=("relay",)) as running:
        yield running


@pytest.fixture(scope="module")
def relay_stack(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    """A relay stack shared by the tests that kill nothing."""
    with running_stack(
        tmp_path_factory.mktemp("relay"), module_database_url, transports=("relay",)
    ) as running:
        yield running


@pytest.fixture
def stack_without_watchdog(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """No worker lease watchdog anywhere (relay has none anyway): only the queue's retry brings it back."""
    with running_stack(tmp_path, database_url, transports=("relay",), watchdog=False) as running:
        yield running


def watcher(stack: Stack, variant: str | None) -> RelayWatcher:
    settings = ClientSettings(
        endpoints=stack.endpoints(),
        timing=stack.settings.timing,
        variant=variant,
        options={"min_delay_s": "2"},
    )
    return RelayWatcher(settings)


async def watch(stack: Stack, variant: str | None, seen: list[ClientEvent], timeout: float = 40) -> None:
    """Run one relay session, appending what it yields to ``seen``, until the terminal event."""
    request = JobRequest(owner="alice", shape=SLOW, seed=3, time_scale=SCALE)
    stream = watcher(stack, variant).session(request)
    try:
        async with asyncio.timeout(timeout * UNIT):
            async for event in stream:
                seen.append(event)
                if isinstance(event, Progress) and event.kind in ("done", "failed"):
                    return
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def job_of(seen: list[ClientEvent]) -> str:
    def submitted() -> str | None:
        return next((e.job_id for e in seen if isinstance(e, Submitted)), None)

    return await wait_until(submitted, 20, "the job to be submitted")


async def until_step(stack: Stack, job_id: str, step: int) -> None:
    async def reached() -> bool:
        return (await asyncio.to_thread(job_row, stack, job_id))["current_step"] >= step

    await wait_until(reached, 20, f"job {job_id} to reach step {step}")


def task_row(stack: Stack, job_id: str) -> dict[str, Any]:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT state, dispatch_count, response_count, last_status FROM relay_tasks WHERE job_id = %s "
            "ORDER BY created_at LIMIT 1",
            (job_id,),
        ).fetchone()
    assert row is not None
    return dict(zip(("state", "dispatch_count", "response_count", "last_status"), row, strict=True))


def shown(seen: list[ClientEvent]) -> list[int]:
    """The seqs the user saw: receipts the dedupe hid (``shown=False``) are wire repeats, not views."""
    return [e.seq for e in seen if isinstance(e, Progress) and e.shown]


async def kill_mid_job(stack: Stack, variant: str | None) -> tuple[list[ClientEvent], str, str, str, int]:
    seen: list[ClientEvent] = []
    session = asyncio.create_task(watch(stack, variant, seen))
    job_id = await job_of(seen)
    await until_step(stack, job_id, 4)
    victim = stack.services["worker"].live()[0]
    await asyncio.to_thread(stack.kill, victim)
    checkpoint = (await asyncio.to_thread(job_row, stack, job_id))["current_step"]
    fresh = await asyncio.to_thread(stack.replace, victim)
    await asyncio.wait_for(session, 45 * UNIT)
    return seen, job_id, victim.name, fresh.name, checkpoint


async def test_ack_at_end_survives_sigkill_through_the_queue_retry(stack_without_watchdog: Stack) -> None:
    """The held push dies with the instance; the queue's retry resumes the job; the user sees 1..15 once."""
    stack = stack_without_watchdog
    seen, job_id, victim, fresh, checkpoint = await kill_mid_job(stack, "ack-at-end")
    assert 4 <= checkpoint < 14
    assert shown(seen) == ALL, "a duplicate or a lost event reached the user"
    assert event_seqs(stack, job_id) == ALL
    runs = step_runs(stack, job_id)
    assert [seq for seq, _, _ in runs] == list(range(1, 15)), "a step ran twice or not at all"
    assert {inst for seq, _, inst in runs if seq > checkpoint} == {fresh}
    task = task_row(stack, job_id)
    assert task["state"] == "succeeded" and task["last_status"] == 200
    assert task["dispatch_count"] >= 2, "the queue must have retried the push"
    row = job_row(stack, job_id)
    assert row["context"]["instance"] == fresh and row["context"]["kind"] == "request"
    assert victim != fresh


async def test_relay_ack_now_waits_for_the_watchdog_cron_after_sigkill(stack: Stack) -> None:
    """202 released the task at once, so the queue cannot retry: the job's lease goes stale and the
    API's watchdog cron re-enqueues it (a task of its own); it resumes; no dup, no loss."""
    seen, job_id, _victim, fresh, checkpoint = await kill_mid_job(stack, None)
    assert 4 <= checkpoint < 14
    assert shown(seen) == ALL
    assert event_seqs(stack, job_id) == ALL
    runs = step_runs(stack, job_id)
    assert [seq for seq, _, _ in runs] == list(range(1, 15))
    first = task_row(stack, job_id)
    assert first == {"state": "succeeded", "dispatch_count": 1, "response_count": 1, "last_status": 202}
    row = job_row(stack, job_id)
    assert row["attempt"] == 2 and row["context"]["instance"] == fresh
    assert row["context"]["kind"] == "worker-background" and row["context"]["trigger"] == "cron"


@pytest.mark.smoke
async def test_room_restart_is_recovered_by_snapshot_and_dedupe(stack: Stack) -> None:
    """Rooms keep no history: after the room server dies the client reconnects, fetches the snapshot."""
    seen: list[ClientEvent] = []
    session = asyncio.create_task(watch(stack, None, seen))
    job_id = await job_of(seen)
    await until_step(stack, job_id, 3)
    victim = stack.services["rooms"].live()[0]
    await asyncio.to_thread(stack.kill, victim)
    await asyncio.to_thread(stack.replace, victim)
    await asyncio.wait_for(session, 45 * UNIT)
    assert shown(seen) == ALL
    assert any(isinstance(e, Disconnected) for e in seen) and any(isinstance(e, Resumed) for e in seen)


# ---------------------------------------------------------------- OIDC on the push target


def signing_key(stack: Stack) -> SigningKey:
    """A key the queue's JWKS lists: published the way the queue publishes its own (public half only).

    The queue's own private key is in its memory alone: nothing in the shared database can sign.
    """
    key = SigningKey.generate()
    with psycopg.connect(stack.database_url) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'relay_signing_keys'"
            )
        }
        assert columns == {"kid", "public_jwk", "created_at"}, columns
        conn.execute(
            "INSERT INTO relay_signing_keys (kid, public_jwk) VALUES (%s, %s)",
            (key.kid, Jsonb(key.public_jwk)),
        )
    return key


def push(stack: Stack, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    body = {"job_id": str(uuid.uuid4()), "ack": "now"}
    return httpx.post(
        f"{stack.endpoints()['worker']}{RUN_PATH}", json=body, headers=headers, timeout=10 * UNIT
    )


@pytest.mark.smoke
def test_push_tokens_are_checked_against_the_queues_jwks(relay_stack: Stack) -> None:
    """Missing, forged, expired or wrong-audience OIDC tokens are refused; a genuine one passes."""
    stack = relay_stack
    peers = stack.services["worker"].config.peers
    issuer, audience = peers["queue"], peers["worker"]
    key = signing_key(stack)
    now = time.time()
    good = key.sign(id_token_claims(issuer, audience, now, 600))
    forged = jwt.encode(
        id_token_claims(issuer, audience, now, 600),
        SigningKey.generate().private_pem,
        algorithm="RS256",
        headers={"kid": key.kid},
    )
    expired = key.sign(id_token_claims(issuer, audience, now - 4000, 600))
    wrong_aud = key.sign(id_token_claims(issuer, stack.endpoints()["worker"], now, 600))
    assert push(stack, None).status_code == 401
    assert push(stack, forged).status_code == 401
    assert push(stack, expired).status_code == 401
    assert push(stack, wrong_aud).status_code == 403
    accepted = push(stack, good)
    assert accepted.status_code == 200 and accepted.json()["result"] == "missing"


# ---------------------------------------------------------------- room tokens


def create(stack: Stack, owner: str) -> dict[str, Any]:
    body = {"seed": 1, "time_scale": SCALE}
    api = stack.endpoints()["api"]
    response = httpx.post(f"{api}/relay/jobs", json=body, headers=auth(api, owner), timeout=10 * UNIT)
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()
    return data


async def join_status(stack: Stack, room: str, token: str | None) -> int:
    url = stack.endpoints()["rooms"].replace("http://", "ws://") + room
    if token:
        url += f"?token={token}"
    try:
        async with connect(url, open_timeout=5 * UNIT, proxy=None):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.smoke
async def test_a_room_admits_only_its_own_jobs_token(relay_stack: Stack) -> None:
    """Another job's token (even the same owner's) is refused with 403; no token is 401."""
    stack = relay_stack
    mine, theirs, also_mine = create(stack, "alice"), create(stack, "bob"), create(stack, "alice")
    assert await join_status(stack, mine["room"], mine["token"]) == 101
    assert await join_status(stack, mine["room"], theirs["token"]) == 403
    assert await join_status(stack, mine["room"], also_mine["token"]) == 403
    assert await join_status(stack, mine["room"], None) == 401
    publish = httpx.post(
        f"{stack.endpoints()['rooms']}{mine['room']}", json={"seq": 1, "kind": "step"}, timeout=10 * UNIT
    )
    assert publish.status_code == 401, "only services may publish into a room"


# ---------------------------------------------------------------- CGNAT: the heartbeat option


async def test_cgnat_idle_cut_silences_the_room_unless_the_heartbeat_is_on(relay_stack: Stack) -> None:
    """Steps longer than the NAT idle timeout: without a heartbeat the socket dies silently."""
    stack = relay_stack
    from progressbench.chaos.client import ToxicSpec

    assert stack.control is not None
    endpoints = stack.cell_endpoints(1)[0]
    proxy = stack.cell_proxy_names(1)[0]
    rooms_proxy = next(name for name in proxy if name.endswith("-rooms"))
    # 3 steps of 40 s (2 s at scale 0.05) against a 20 s (1 s) idle cut.
    shape = JobShape(
        waves=({"label": "Upscaling image", "items": 3},), step_seconds_min=40, step_seconds_max=40
    )
    job_s = 3 * 40 * SCALE

    async def run(options: dict[str, str]) -> list[ClientEvent]:
        settings = ClientSettings(endpoints=endpoints, timing=stack.settings.timing, options=options)
        stream = RelayWatcher(settings).session(
            JobRequest(owner="carol", shape=shape, seed=1, time_scale=SCALE)
        )
        seen: list[ClientEvent] = []
        try:
            async with asyncio.timeout(job_s + 3 * UNIT):
                async for event in stream:
                    seen.append(event)
                    if isinstance(event, Progress) and event.kind == "done":
                        break
        except TimeoutError:
            seen.append(Disconnected(reason="test deadline"))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return seen

    spec = ToxicSpec("idle_timeout", attributes={"timeout": int(20_000 * SCALE)})
    with stack.control.toxic(rooms_proxy, spec):
        silent, beating = await asyncio.gather(
            run({"min_delay_s": "2"}), run({"min_delay_s": "2", "heartbeat_s": "10"})
        )
    assert shown(beating) == [1, 2, 3, 4], "with a 10 s heartbeat the socket outlives the idle cut"
    assert shown(silent) == [], "without one, every step published after the cut is lost"
    assert [e for e in silent if isinstance(e, Disconnected)] == [Disconnected(reason="test deadline")], (
        "and the client never notices: a silent stall"
    )
