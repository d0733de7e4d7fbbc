"""``realtime`` on a real stack: worker rows → WAL → the Realtime stand-in → the official client.

Jobs run at time scale 0.05; the realtime server process decodes the
``pgoutput`` slot and checks RLS per subscriber; every test is bounded. The
tests share one stack, on a database cloned for the module; the last one
kills the realtime process (and leaves a replacement running).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from realtime import AsyncRealtimeClient
from realtime.types import RealtimePostgresChangesListenEvent, RealtimeSubscribeStates
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from progressbench.app.session import SessionSpec, run_session
from progressbench.app.supervisor import Stack
from progressbench.core.config import JobShape, Timing
from tests.helpers import UNIT, wait_until
from tests.integration.api_client import auth, sign_in, user_id
from tests.integration.conftest import SCALE, running_stack
from tests.integration.sse_helpers import progress_seqs, score, wait_for_events

# realtime 2.34.1 logs ``ConnectionClosed.code``/``.reason`` in its reconnect path, which websockets 15
# deprecates. Outside pytest that DeprecationWarning is ignored by default; under this suite's
# warnings-as-errors it would raise inside the library's listen task and kill it (our watcher
# then reports ``listener-died`` and recovers). Ignore exactly that warning here, so these
# tests see the library as it behaves in production.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:ConnectionClosed\.(code|reason) is deprecated:DeprecationWarning"
)

SHAPE = JobShape(step_seconds_min=6.0, step_seconds_max=6.0)  # 0.3 s steps at SCALE
ALL_SEQS = list(range(1, SHAPE.total_steps + 2))
#: One step: a job whose first row marks a point in the commit order.
MARKER = JobShape(waves=({"label": "marker", "items": 1},), step_seconds_min=6.0, step_seconds_max=6.0)


@pytest.fixture(scope="module")
def rt_stack(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    run_dir: Path = tmp_path_factory.mktemp("rt")
    with running_stack(run_dir, module_database_url, transports=("realtime",)) as running:
        yield running


def _spec(stack: Stack, transport: str, owner: str, timing: Timing | None = None) -> SessionSpec:
    return SessionSpec(
        transport=transport,
        profile="test",
        owner=owner,
        user_index=0,
        job_index=0,
        seed=3,
        shape=SHAPE,
        timing=timing or stack.settings.timing,
        endpoints=stack.cell_endpoints(1)[0],
    )


async def _create(api: str, owner: str, shape: JobShape = SHAPE) -> dict[str, str]:
    body = {"seed": 1, "time_scale": SCALE, "shape": shape.model_dump(mode="json")}
    async with httpx.AsyncClient(base_url=api, timeout=10 * UNIT) as http:
        response = await http.post("/realtime/jobs", json=body, headers=auth(api, owner))
    assert response.status_code == 202, response.text
    data: dict[str, str] = response.json()
    return data


def _job_status(database_url: str, job_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.smoke
async def test_official_client_gets_every_own_row_in_order_and_none_of_another_users(rt_stack: Stack) -> None:
    """Subscribed with alice's JWT (set_auth) to all of job_events, the unchanged official client
    receives every row of alice's job in seq order, off the WAL, and no row of bob's job —
    even through a binding that asks for bob's rows explicitly."""
    api, rt = rt_stack.endpoints()["api"], rt_stack.endpoints()["realtime"]
    anon = (await _create(api, "warmup"))["anon_key"]
    alice_token = sign_in(api, "alice")["access_token"]
    client = AsyncRealtimeClient(f"{rt}/realtime/v1", token=anon)
    rows: list[dict[str, Any]] = []
    live = asyncio.Event()
    states: list[RealtimeSubscribeStates] = []
    try:
        await client.set_auth(alice_token)
        channel = client.channel("alice-jobs")
        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert,
            lambda payload: rows.append(payload["data"].get("record") or {}),
            table="job_events",
        )
        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert,
            lambda payload: rows.append(payload["data"].get("record") or {}),
            table="job_events",
            filter=f"owner=eq.{user_id(api, 'bob')}",
        )
        channel.on_system(lambda payload: live.set())
        await channel.subscribe(lambda state, err: states.append(state))
        await asyncio.wait_for(live.wait(), 10 * UNIT)
        assert states == [RealtimeSubscribeStates.SUBSCRIBED]
        alice, bob = await asyncio.gather(_create(api, "alice"), _create(api, "bob"))
        await wait_until(
            lambda: any(r["job_id"] == alice["job_id"] and r["kind"] == "done" for r in rows),
            20,
            "alice's terminal row",
        )
        await wait_for_events(rt_stack.database_url, "bob", len(ALL_SEQS), timeout=20)
        # The feed delivers in commit order: once a row committed after bob's last one has
        # arrived, every row of bob's that was going to (wrongly) arrive has arrived.
        marker = await _create(api, "alice", MARKER)
        await wait_until(
            lambda: any(r["job_id"] == marker["job_id"] for r in rows), 20, "a row committed after bob's"
        )
    finally:
        await client.close()
    assert [r["seq"] for r in rows if r["job_id"] == alice["job_id"]] == ALL_SEQS
    assert {r["owner"] for r in rows} == {user_id(api, "alice")}
    assert not any(r["job_id"] == bob["job_id"] for r in rows)


async def test_watcher_delivers_the_whole_job_through_realtime(rt_stack: Stack) -> None:
    """The ``realtime`` watcher through the cell proxy: every event once, in order, terminal."""
    record = await asyncio.wait_for(run_session(_spec(rt_stack, "realtime", "carol")), 30 * UNIT)
    assert record.outcome == "terminal", record.error
    assert progress_seqs(record) == ALL_SEQS
    row = score(rt_stack.database_url, record)
    assert (row.lost, row.duplicates, row.out_of_order, row.foreign_events) == (0, 0, 0, 0)
    assert not row.silent_stall


def _password_sessions(database_url: str, phone: str) -> int:
    """Sessions the phone's account has opened (each sign-in, by password or to sign up, is one)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT t.session_id) FROM auth_refresh_tokens t JOIN auth_users u "
            "ON u.id = t.user_id WHERE u.email LIKE %s",
            (f"{phone}.%",),
        ).fetchone()
    return int(row[0]) if row else 0


async def test_a_phone_signs_in_once_and_its_next_job_starts_from_the_stored_session(rt_stack: Stack) -> None:
    """supabase-js persists its session: the phone's account signed up once (one session, one
    password hash) and neither its first nor its second job opens another."""
    first = await asyncio.wait_for(run_session(_spec(rt_stack, "realtime", "dora")), 30 * UNIT)
    assert first.outcome == "terminal", first.error
    opened = await asyncio.to_thread(_password_sessions, rt_stack.database_url, "dora")
    assert opened == 1
    second = await asyncio.wait_for(run_session(_spec(rt_stack, "realtime", "dora")), 30 * UNIT)
    assert second.outcome == "terminal", second.error
    assert progress_seqs(second) == ALL_SEQS
    assert await asyncio.to_thread(_password_sessions, rt_stack.database_url, "dora") == opened


async def test_no_auth_receives_nothing_and_is_a_silent_stall(rt_stack: Stack) -> None:
    """Without set_auth the client joins with the anon key: RLS hides every row, no error arrives,
    the session runs out its deadline, and the ledger flags a silent stall named by the finding."""
    timing = Timing(time_scale=SCALE, session_deadline_s=120.0)  # 6 s
    record = await asyncio.wait_for(
        run_session(_spec(rt_stack, "realtime:no-auth", "dave", timing)), 30 * UNIT
    )
    assert record.outcome == "deadline"
    assert progress_seqs(record) == []
    assert not [o for o in record.observations if o.type in ("disconnected", "gap_flagged")]
    assert record.job_id is not None and _job_status(rt_stack.database_url, record.job_id) == "done"
    row = score(rt_stack.database_url, record)
    assert row.silent_stall
    assert row.lost == len(ALL_SEQS)
    assert "no-auth" in row.findings.split(";")


@pytest.mark.smoke
async def test_cut_connection_is_recovered_by_the_refetch(rt_stack: Stack) -> None:
    """Both of the phone's proxies go down for 1 s mid-job (connections cut, new ones refused):
    realtime never replays, yet the refetch after resubscribing recovers every event once."""
    assert rt_stack.control is not None
    proxies = rt_stack.cell_proxy_names(1)[0]
    task = asyncio.create_task(run_session(_spec(rt_stack, "realtime", "erin")))
    try:
        await wait_for_events(rt_stack.database_url, "erin", 3, timeout=15)
        for name in proxies:
            await asyncio.to_thread(rt_stack.control.set_enabled, name, False)
        await asyncio.sleep(1.0)  # the outage itself: part of the scenario, not a wait
        for name in proxies:
            await asyncio.to_thread(rt_stack.control.set_enabled, name, True)
        record = await asyncio.wait_for(task, 30 * UNIT)
    finally:
        for name in proxies:
            await asyncio.to_thread(rt_stack.control.set_enabled, name, True)
    assert record.outcome == "terminal", record.error
    assert progress_seqs(record) == ALL_SEQS
    row = score(rt_stack.database_url, record)
    assert (row.lost, row.duplicates, row.out_of_order) == (0, 0, 0)
    assert row.disconnects >= 1
    findings = {o.kind for o in record.observations if o.type == "finding"}
    assert any(o.type == "resumed" for o in record.observations)
    assert findings <= {"client-gave-up", "refetch-recovered"}, record.observations


async def _join(rt: str, apikey: str, access_token: str | None) -> dict[str, Any]:
    """One raw Phoenix join on a fresh socket; the server's phx_reply."""
    async with connect(f"{rt.replace('http', 'ws', 1)}/socket/websocket?apikey={apikey}&vsn=1.0.0") as ws:
        payload: dict[str, Any] = {"config": {"postgres_changes": [{"event": "*", "schema": "public"}]}}
        if access_token is not None:
            payload["access_token"] = access_token
        frame = {"event": "phx_join", "payload": payload, "topic": "realtime:t", "ref": "1", "join_ref": "1"}
        await ws.send(json.dumps(frame))
        while True:
            reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10 * UNIT))
            if reply["event"] == "phx_reply":
                return reply


async def test_bad_tokens_are_refused_on_join_and_on_the_read_route(rt_stack: Stack) -> None:
    """Forged, expired and roleless JWTs get a join error; a forged apikey is refused at the
    handshake (401); the API read route answers 401 for a bad token and 404 for another job's."""
    api, rt = rt_stack.endpoints()["api"], rt_stack.endpoints()["realtime"]
    created = await _create(api, "frank")
    anon, secret, now = created["anon_key"], rt_stack.secret, int(time.time())
    ok = await _join(rt, anon, created["token"])
    assert ok["payload"]["status"] == "ok" and ok["ref"] == "1"
    assert ok["payload"]["response"]["postgres_changes"][0]["id"] > 0
    claims = {"sub": "frank", "role": "authenticated", "aud": "authenticated"}
    bad = {
        "forged": jwt.encode({**claims, "exp": now + 60}, "f" * 32, algorithm="HS256"),
        "expired": jwt.encode({**claims, "exp": now - 30}, secret, algorithm="HS256"),
        "roleless": jwt.encode({"sub": "frank", "exp": now + 60}, secret, algorithm="HS256"),
        "garbage": "not-a-jwt",
    }
    replies = await asyncio.gather(*(_join(rt, anon, token) for token in bad.values()))
    for name, reply in zip(bad, replies, strict=True):
        assert reply["payload"]["status"] == "error", name
        assert reply["ref"] == "1"
    reasons = dict(zip(bad, (r["payload"]["response"]["reason"] for r in replies), strict=True))
    assert "Token has expired" in reasons["expired"]
    assert "`role` and `exp` are required" in reasons["roleless"]
    with pytest.raises(InvalidStatus) as refused:
        await _join(rt, bad["forged"], None)
    assert refused.value.response.status_code == 401

    other = await _create(api, "grace")
    url = f"/realtime/jobs/{created['job_id']}/events"
    async with httpx.AsyncClient(base_url=api, timeout=10 * UNIT) as http:
        assert (
            await http.get(url, headers={"authorization": f"Bearer {created['token']}"})
        ).status_code == 200
        assert (await http.get(url, headers={"authorization": f"Bearer {bad['forged']}"})).status_code == 401
        assert (await http.get(url)).status_code == 401
        assert (await http.get(url, headers={"authorization": f"Bearer {other['token']}"})).status_code == 404


def test_metrics_name_messages_and_peak_connections(rt_stack: Stack) -> None:
    """The realtime server's /metrics (admin socket) exports what the cost model prices."""
    meters = rt_stack.meters()["realtime"]
    assert meters.get("pb_realtime_messages_total", 0) > 0
    assert meters.get("pb_peak_connections", 0) >= 1


def test_slot_exists_while_running(rt_stack: Stack) -> None:
    """One pgoutput slot in the stack's database, owned by the realtime process, on the
    supabase_realtime publication (which the cloned database inherited from the template)."""
    with psycopg.connect(rt_stack.database_url) as conn:
        slots = conn.execute(
            "SELECT slot_name, plugin FROM pg_replication_slots WHERE database = current_database()"
        ).fetchall()
        tables = conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'"
        ).fetchall()
    assert slots == [("pb_realtime", "pgoutput")]
    assert tables == [("job_events",)]


async def test_a_killed_realtime_process_is_replaced_with_a_fresh_slot(rt_stack: Stack) -> None:
    """SIGKILL leaves the slot behind; the replacement drops the stale slot, creates a new one
    (changes in between are never replayed) and serves sessions again; SIGTERM drops the slot."""
    old = rt_stack.services["realtime"].live()[0]
    await asyncio.to_thread(rt_stack.kill, old)
    fresh = await asyncio.to_thread(rt_stack.replace, old, 0.0)
    record = await asyncio.wait_for(run_session(_spec(rt_stack, "realtime", "heidi")), 30 * UNIT)
    assert record.outcome == "terminal", record.error
    assert progress_seqs(record) == ALL_SEQS
    assert await asyncio.to_thread(rt_stack.terminate, fresh, 10.0 * UNIT) == "exited"
    with psycopg.connect(rt_stack.database_url) as conn:
        remaining = "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
        assert conn.execute(remaining).fetchone() == (0,)
    await asyncio.to_thread(rt_stack.replace, fresh, 0.0)
