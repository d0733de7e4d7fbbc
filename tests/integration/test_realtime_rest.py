"""``GET /rest/v1/<table>`` on a real stack: the PostgREST subset, under RLS, with PostgREST's errors.

Two users (alice, bob) each run one short realtime job; the tests then read
``job_events`` as each of them, as anon, and with broken credentials and
queries, through the API's ``/rest/v1`` and through the gateway (the one URL a
supabase client is given). One stack for the module, on a cloned database.
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
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from progressbench.core.config import JobShape
from tests.helpers import UNIT
from tests.integration.api_client import auth, sign_in, user_id
from tests.integration.conftest import SCALE, running_stack
from tests.integration.sse_helpers import wait_for_events

SHAPE = JobShape(waves=({"label": "w", "items": 3},), step_seconds_min=2.0, step_seconds_max=2.0)
ALL_SEQS = list(range(1, SHAPE.total_steps + 2))


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[dict[str, Any]]:
    """A stack with one finished realtime job of alice's and one of bob's."""
    run_dir: Path = tmp_path_factory.mktemp("rest")
    with running_stack(run_dir, module_database_url, transports=("realtime",)) as stack:
        api = stack.endpoints()["api"]
        created = {}
        for name in ("alice", "bob"):
            body = {"seed": 1, "time_scale": SCALE, "shape": SHAPE.model_dump(mode="json")}
            response = httpx.post(
                f"{api}/realtime/jobs", json=body, headers=auth(api, name), timeout=10 * UNIT
            )
            assert response.status_code == 202, response.text
            created[name] = response.json()

        for name in ("alice", "bob"):
            asyncio.run(wait_for_events(stack.database_url, name, len(ALL_SEQS), timeout=30))
        yield {"stack": stack, "api": api, **created}


def _get(base: str, path: str, key: str, token: str | None = None, **params: str) -> httpx.Response:
    headers = {"apikey": key}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.get(f"{base}{path}", params=params, headers=headers, timeout=10 * UNIT)


def _assert_postgrest_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details", "hint"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_a_user_reads_exactly_their_own_rows_in_the_asked_order(jobs: dict[str, Any]) -> None:
    """alice's select on all of job_events returns her job's rows, in seq order, and no row of bob's."""
    api, key = jobs["api"], jobs["alice"]["anon_key"]
    token = sign_in(api, "alice")["access_token"]
    response = _get(api, "/rest/v1/job_events", key, token, select="*", order="seq.asc")
    assert response.status_code == 200, response.text
    rows = response.json()
    assert {r["owner"] for r in rows} == {user_id(api, "alice")}
    assert [r["seq"] for r in rows] == ALL_SEQS
    assert {r["job_id"] for r in rows} == {jobs["alice"]["job_id"]}
    assert set(rows[0]) == {"job_id", "seq", "owner", "kind", "message", "payload", "committed_at"}


def test_filters_order_and_limit_select_the_refetch(jobs: dict[str, Any]) -> None:
    """The refetch's query (eq job_id, gt seq, order, limit, a column list) returns just those rows."""
    api, key = jobs["api"], jobs["alice"]["anon_key"]
    token = sign_in(api, "alice")["access_token"]
    job = jobs["alice"]["job_id"]
    response = _get(
        api,
        "/rest/v1/job_events",
        key,
        token,
        select="seq,kind",
        job_id=f"eq.{job}",
        seq="gt.2",
        order="seq.desc",
        limit="2",
    )
    assert response.status_code == 200, response.text
    last = ALL_SEQS[-1]
    assert response.json() == [{"seq": last, "kind": "done"}, {"seq": last - 1, "kind": "step"}]


def test_another_users_rows_are_invisible_even_when_asked_for_by_id(jobs: dict[str, Any]) -> None:
    """bob asking for alice's job by id gets an empty list (RLS), not an error and not her rows."""
    api, key = jobs["api"], jobs["alice"]["anon_key"]
    bob = sign_in(api, "bob")["access_token"]
    response = _get(api, "/rest/v1/job_events", key, bob, job_id=f"eq.{jobs['alice']['job_id']}")
    assert response.status_code == 200, response.text
    assert response.json() == []
    own = _get(api, "/rest/v1/job_events", key, bob, select="owner").json()
    assert own and {r["owner"] for r in own} == {user_id(api, "bob")}


def test_anon_sees_nothing(jobs: dict[str, Any]) -> None:
    """The anon key alone (the forgotten sign-in) reads an empty table: anon has no policy."""
    api, key = jobs["api"], jobs["alice"]["anon_key"]
    response = _get(api, "/rest/v1/job_events", key)
    assert response.status_code == 200, response.text
    assert response.json() == []


def test_the_per_job_token_reads_its_owners_rows(jobs: dict[str, Any]) -> None:
    """The job's own token (role authenticated, sub = owner) is a Supabase-shaped JWT RLS accepts."""
    api, alice = jobs["api"], jobs["alice"]
    response = _get(api, "/rest/v1/job_events", alice["anon_key"], alice["token"], select="seq", order="seq")
    assert [r["seq"] for r in response.json()] == ALL_SEQS


def test_bad_credentials_are_401_in_postgrest_shape(jobs: dict[str, Any]) -> None:
    """No apikey, a forged or expired JWT, a role that is not a client role: 401 with PostgREST's codes."""
    api, key = jobs["api"], jobs["alice"]["anon_key"]
    token = sign_in(api, "alice")["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-secret-but-long-enough-for-hs256", algorithm="HS256")
    plain = httpx.get(
        f"{api}/rest/v1/job_events", headers={"authorization": f"Bearer {token}"}, timeout=10 * UNIT
    )
    _assert_postgrest_error(plain, 401, "PGRST301")
    _assert_postgrest_error(_get(api, "/rest/v1/job_events", key, forged), 401, "PGRST301")
    _assert_postgrest_error(_get(api, "/rest/v1/job_events", key, "not.a.jwt"), 401, "PGRST301")
    secret = jobs["stack"].secret
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, secret, algorithm="HS256")
    _assert_postgrest_error(_get(api, "/rest/v1/job_events", key, expired), 401, "PGRST303")
    superuser = jwt.encode({**claims, "role": "postgres"}, secret, algorithm="HS256")
    _assert_postgrest_error(_get(api, "/rest/v1/job_events", key, superuser), 401, "42501")


def test_unexposed_tables_and_unsupported_queries_are_refused_clearly(jobs: dict[str, Any]) -> None:
    """jobs and auth_users are not exposed (404 PGRST205); operators, embedding, unknown columns,
    bad values and writes get PostgREST's 400/405 codes, never a silently ignored filter."""
    api, key = jobs["api"], jobs["alice"]["anon_key"]
    token = sign_in(api, "alice")["access_token"]
    for table in ("jobs", "auth_users", "step_runs"):
        _assert_postgrest_error(_get(api, f"/rest/v1/{table}", key, token), 404, "PGRST205")
    like = _assert_postgrest_error(
        _get(api, "/rest/v1/job_events", key, token, message="like.*a*"), 400, "PGRST100"
    )
    assert "like" in like["details"]
    _assert_postgrest_error(_get(api, "/rest/v1/job_events", key, token, seq="between.1"), 400, "PGRST100")
    _assert_postgrest_error(
        _get(api, "/rest/v1/job_events", key, token, select="seq,jobs(*)"), 400, "PGRST100"
    )
    _assert_postgrest_error(
        _get(api, "/rest/v1/job_events", key, token, **{"or": "(seq.eq.1)"}), 400, "PGRST100"
    )
    _assert_postgrest_error(_get(api, "/rest/v1/job_events", key, token, limit="-1"), 400, "PGRST100")
    _assert_postgrest_error(_get(api, "/rest/v1/job_events", key, token, nope="eq.1"), 400, "42703")
    bad_uuid = _assert_postgrest_error(
        _get(api, "/rest/v1/job_events", key, token, job_id="eq.x"), 400, "22P02"
    )
    assert "uuid" in bad_uuid["message"]
    other_schema = httpx.get(
        f"{api}/rest/v1/job_events",
        headers={"apikey": key, "authorization": f"Bearer {token}", "accept-profile": "auth"},
        timeout=10 * UNIT,
    )
    _assert_postgrest_error(other_schema, 406, "PGRST106")
    write = httpx.post(
        f"{api}/rest/v1/job_events",
        json={"seq": 1},
        headers={"apikey": key, "authorization": f"Bearer {token}"},
        timeout=10 * UNIT,
    )
    _assert_postgrest_error(write, 405, "PGRST117")


async def test_the_gateway_routes_each_prefix_and_refuses_the_rest(jobs: dict[str, Any]) -> None:
    """One base URL: /auth/v1 and /rest/v1 reach the API, /realtime/v1 the realtime server (its 401 for a
    missing key), anything else is Kong's 404; one kept-alive client may mix prefixes."""
    gateway, key = jobs["stack"].endpoints()["supabase"], jobs["alice"]["anon_key"]
    token = sign_in(jobs["api"], "alice")["access_token"]
    with httpx.Client(base_url=gateway, timeout=10 * UNIT) as http:
        user = http.get("/auth/v1/user", headers={"authorization": f"Bearer {token}"})
        assert user.status_code == 200 and user.json()["id"] == user_id(jobs["api"], "alice")
        rows = http.get(
            "/rest/v1/job_events",
            params={"select": "seq"},
            headers={"apikey": key, "authorization": f"Bearer {token}"},
        )
        assert [r["seq"] for r in rows.json()] == ALL_SEQS
        assert rows.headers["connection"] == "close"
        other = http.get("/realtime/jobs")
        assert other.status_code == 404 and other.json() == {"message": "no Route matched with those values"}
    ws_url = gateway.replace("http://", "ws://") + "/realtime/v1/websocket?vsn=1.0.0"
    with pytest.raises(InvalidStatus) as refused:  # the realtime server's own refusal, before the upgrade
        async with connect(ws_url, open_timeout=10 * UNIT):
            pass
    assert refused.value.response.status_code == 401
    async with connect(f"{ws_url}&apikey={key}", open_timeout=10 * UNIT) as ws:
        await ws.send('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10 * UNIT))
    assert reply["event"] == "phx_reply" and reply["payload"]["status"] == "ok"


# supabase 2.34 hands postgrest-py ``timeout`` and ``verify``, which postgrest-py itself deprecates: the bare
# acreate_client(url, key) of every app warns; the phone passes an httpx client instead.
@pytest.mark.filterwarnings("ignore:The '(timeout|verify|proxy)' parameter is deprecated:DeprecationWarning")
async def test_the_official_supabase_client_signs_in_and_reads_only_its_rows(jobs: dict[str, Any]) -> None:
    """acreate_client(gateway, anon key) + sign_in_with_password + table().select().eq().gt().order(),
    unchanged: alice's rows after seq 1, in order; bob's job through alice's client: nothing."""
    from supabase import acreate_client

    api, gateway = jobs["api"], jobs["stack"].endpoints()["supabase"]
    alice = sign_in(api, "alice")
    client = await acreate_client(gateway, jobs["alice"]["anon_key"])
    await client.auth.sign_in_with_password(
        {"email": alice["user"]["email"], "password": "pw-" + "alice" * 2}
    )
    query = client.table("job_events").select("seq", "kind")
    mine = await query.eq("job_id", jobs["alice"]["job_id"]).gt("seq", 1).order("seq").execute()
    assert [r["seq"] for r in mine.data] == ALL_SEQS[1:]
    theirs = await client.table("job_events").select("*").eq("job_id", jobs["bob"]["job_id"]).execute()
    assert theirs.data == []
    await client.realtime.close()


async def test_the_gateway_cuts_a_head_that_never_ends(jobs: dict[str, Any]) -> None:
    """A request head that stops arriving is answered 400 and closed after the header timeout
    (no connection held open by a client that sends half a request)."""
    host, port = jobs["stack"].endpoints()["supabase"].removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /rest/v1/job_events HTTP/1.1\r\nHost: x\r\n")
        answer = await asyncio.wait_for(reader.read(), 15 * UNIT)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400")


def test_a_project_auth_user_creates_jobs_it_owns_and_reads_them(jobs: dict[str, Any]) -> None:
    """Against a real project the phone creates its job with the project's Auth token: the API takes
    the owner from that token (issuer <project>/auth/v1, the project secret), and /realtime/config
    hands out the same anon key the job answer carries."""
    api, stack = jobs["api"], jobs["stack"]
    config = httpx.get(f"{api}/realtime/config", timeout=10 * UNIT)
    assert config.status_code == 200 and config.json() == {"anon_key": jobs["alice"]["anon_key"]}
    now = int(time.time())
    carol = "00000000-0000-4000-8000-00000000ca01"
    claims = {"iss": "https://ref.supabase.co/auth/v1", "sub": carol, "aud": "authenticated"}
    token = jwt.encode(
        {**claims, "role": "authenticated", "iat": now, "exp": now + 600}, stack.secret, "HS256"
    )
    body = {"seed": 1, "time_scale": SCALE, "shape": SHAPE.model_dump(mode="json")}
    headers = {"authorization": f"Bearer {token}"}
    created = httpx.post(f"{api}/realtime/jobs", json=body, headers=headers, timeout=10 * UNIT)
    assert created.status_code == 202, created.text
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT owner FROM jobs WHERE id = %s", (created.json()["job_id"],)).fetchone()
    assert row == (carol,)
    wrong_secret = jwt.encode(
        {**claims, "role": "authenticated", "iat": now, "exp": now + 600}, "w" * 32, "HS256"
    )
    refused = httpx.post(
        f"{api}/realtime/jobs",
        json=body,
        headers={"authorization": f"Bearer {wrong_secret}"},
        timeout=10 * UNIT,
    )
    assert refused.status_code == 401
