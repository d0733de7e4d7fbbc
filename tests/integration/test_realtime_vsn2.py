"""A Phoenix vsn 2.0.0 client against the real realtime server, over a real websocket.

The client here is written for the test from the protocol description (JSON
arrays ``[join_ref, ref, topic, event, payload]`` out and in, binary kind-3
broadcasts out), independent of the server's codec. It signs in through the
project's sign-in service and joins like supabase-js does; the stack is real
(API, workers, the realtime process decoding the pgoutput slot, Postgres RLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from progressbench.app.supervisor import Stack
from progressbench.core.config import JobShape
from tests.helpers import UNIT, wait_until
from tests.integration.api_client import auth, sign_in, user_id
from tests.integration.conftest import SCALE, running_stack
from tests.integration.sse_helpers import wait_for_events

SHAPE = JobShape(step_seconds_min=6.0, step_seconds_max=6.0)  # 0.3 s steps at SCALE
ALL_SEQS = list(range(1, SHAPE.total_steps + 2))
#: One step: a job whose first row marks a point in the commit order.
MARKER = JobShape(waves=({"label": "marker", "items": 1},), step_seconds_min=6.0, step_seconds_max=6.0)


@pytest.fixture(scope="module")
def rt_stack(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    run_dir: Path = tmp_path_factory.mktemp("rt2")
    with running_stack(run_dir, module_database_url, transports=("realtime",)) as running:
        yield running


async def _create(api: str, owner: str, shape: JobShape = SHAPE) -> dict[str, str]:
    body = {"seed": 1, "time_scale": SCALE, "shape": shape.model_dump(mode="json")}
    headers = await asyncio.to_thread(auth, api, owner)
    async with httpx.AsyncClient(base_url=api, timeout=10 * UNIT) as http:
        response = await http.post("/realtime/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    data: dict[str, str] = response.json()
    return data


class V2Client:
    """The smallest vsn 2.0.0 client: array frames, a ref counter, every inbound frame kept."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[list[Any]] = []
        self.refs = 0

    async def send(self, join_ref: str | None, topic: str, event: str, payload: dict[str, Any]) -> str:
        self.refs += 1
        ref = str(self.refs)
        await self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))
        return ref

    async def join(self, topic: str, bindings: list[dict[str, str]], token: str | None) -> str:
        config = {"broadcast": {"ack": True, "self": False}, "presence": {"enabled": False}, "private": False}
        payload: dict[str, Any] = {"config": {**config, "postgres_changes": bindings}}
        if token is not None:
            payload["access_token"] = token
        join_ref = str(self.refs + 1)
        assert await self.send(join_ref, topic, "phx_join", payload) == join_ref
        return join_ref

    async def read(self) -> None:
        async for message in self.ws:
            assert isinstance(message, str), "this server sends no binary frame to these calls"
            frame = json.loads(message)
            assert isinstance(frame, list) and len(frame) == 5, message
            self.frames.append(frame)

    def find(self, topic: str, event: str, ref: str | None = None) -> list[Any] | None:
        for frame in self.frames:
            if frame[2] == topic and frame[3] == event and (ref is None or frame[1] == ref):
                return frame
        return None

    def rows(self, topic: str) -> list[dict[str, Any]]:
        return [f[4]["data"]["record"] for f in self.frames if f[2] == topic and f[3] == "postgres_changes"]

    async def reply(self, topic: str, ref: str) -> list[Any]:
        frame: list[Any] = await wait_until(lambda: self.find(topic, "phx_reply", ref), 10, f"reply {ref}")
        return frame


@contextlib.asynccontextmanager
async def v2_client(rt: str, apikey: str) -> AsyncIterator[V2Client]:
    url = f"{rt.replace('http', 'ws', 1)}/realtime/v1/websocket?apikey={apikey}&vsn=2.0.0"
    async with connect(url, open_timeout=10 * UNIT) as ws:
        client = V2Client(ws)
        reader = asyncio.create_task(client.read())
        try:
            yield client
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def _subscribed(client: V2Client, topic: str, join_ref: str) -> None:
    """The join's ok reply (with join_ref), then "Subscribed to PostgreSQL" carrying the same join_ref."""
    reply = await client.reply(topic, join_ref)
    assert reply[0] == join_ref and reply[4]["status"] == "ok", reply
    assert all(b["id"] > 0 for b in reply[4]["response"]["postgres_changes"])
    system = await wait_until(lambda: client.find(topic, "system"), 10, f"{topic} subscribed")
    assert system[0] == join_ref and system[1] is None
    assert system[4] == {
        "channel": topic.removeprefix("realtime:"),
        "extension": "postgres_changes",
        "message": "Subscribed to PostgreSQL",
        "status": "ok",
    }


async def test_v2_client_gets_every_own_row_in_order_and_none_of_another_users(rt_stack: Stack) -> None:
    """Signed in as alice (the sign-in service's JWT as access_token), a vsn 2.0.0 client receives
    every row of alice's job in seq order as array frames, and no row of bob's — even through a
    binding that asks for bob's rows explicitly."""
    api, rt = rt_stack.endpoints()["api"], rt_stack.endpoints()["realtime"]
    anon = (await _create(api, "warmup"))["anon_key"]
    alice_token = (await asyncio.to_thread(sign_in, api, "alice"))["access_token"]
    bob_id = await asyncio.to_thread(user_id, api, "bob")
    topic = "realtime:alice-jobs"
    bindings = [
        {"event": "INSERT", "schema": "public", "table": "job_events"},
        {"event": "INSERT", "schema": "public", "table": "job_events", "filter": f"owner=eq.{bob_id}"},
    ]
    async with v2_client(rt, anon) as client:
        heartbeat = await client.send(None, "phoenix", "heartbeat", {})
        assert await client.reply("phoenix", heartbeat) == [
            None,
            heartbeat,
            "phoenix",
            "phx_reply",
            {"status": "ok", "response": {}},
        ]
        join_ref = await client.join(topic, bindings, alice_token)
        await _subscribed(client, topic, join_ref)
        alice, bob = await asyncio.gather(_create(api, "alice"), _create(api, "bob"))
        await wait_until(
            lambda: any(r["job_id"] == alice["job_id"] and r["kind"] == "done" for r in client.rows(topic)),
            20,
            "alice's terminal row",
        )
        await wait_for_events(rt_stack.database_url, "bob", len(ALL_SEQS), timeout=20)
        # Commit order is delivery order on one socket: once a row committed after bob's last one
        # has arrived, every row of bob's that was going to (wrongly) arrive has arrived.
        marker = await _create(api, "alice", MARKER)
        await wait_until(
            lambda: any(r["job_id"] == marker["job_id"] for r in client.rows(topic)), 20, "a row after bob's"
        )
        changes = [f for f in client.frames if f[3] == "postgres_changes"]
        rows = client.rows(topic)
    assert all(f[0] is None and f[1] is None for f in changes), "changes carry no join_ref and no ref"
    assert [r["seq"] for r in rows if r["job_id"] == alice["job_id"]] == ALL_SEQS
    assert {r["owner"] for r in rows} == {await asyncio.to_thread(user_id, api, "alice")}
    assert not any(r["job_id"] == bob["job_id"] for r in rows)


async def test_v2_no_auth_channel_stays_silently_empty(rt_stack: Stack) -> None:
    """A channel joined with the anon key only (no access_token) is subscribed and then gets
    nothing and no error, while an authenticated channel on the same socket — same ordered
    outbound stream — receives the whole job, a marker committed after it included."""
    api, rt = rt_stack.endpoints()["api"], rt_stack.endpoints()["realtime"]
    anon = (await _create(api, "warmup"))["anon_key"]
    ivan_token = (await asyncio.to_thread(sign_in, api, "ivan"))["access_token"]
    binding = [{"event": "*", "schema": "public", "table": "job_events"}]
    async with v2_client(rt, anon) as client:
        silent_ref = await client.join("realtime:no-auth", binding, None)
        await _subscribed(client, "realtime:no-auth", silent_ref)
        seen_ref = await client.join("realtime:ivan", binding, ivan_token)
        await _subscribed(client, "realtime:ivan", seen_ref)
        job = await _create(api, "ivan")
        await wait_until(
            lambda: any(
                r["job_id"] == job["job_id"] and r["kind"] == "done" for r in client.rows("realtime:ivan")
            ),
            20,
            "ivan's terminal row",
        )
        marker = await _create(api, "ivan", MARKER)
        await wait_until(
            lambda: any(r["job_id"] == marker["job_id"] for r in client.rows("realtime:ivan")),
            20,
            "the marker",
        )
        silent = [f for f in client.frames if f[2] == "realtime:no-auth"]
    assert [r["seq"] for r in client.rows("realtime:ivan") if r["job_id"] == job["job_id"]] == ALL_SEQS
    assert [f[3] for f in silent] == ["phx_reply", "system"], "subscribed, then silence: no rows, no error"


async def test_v2_broadcast_leave_and_malformed_frames_are_answered(rt_stack: Stack) -> None:
    """realtime-js's binary broadcast push (kind 3) gets its ok reply; a 1.0.0 object frame on a
    2.0.0 socket gets an error reply naming the version and the socket stays usable; phx_leave is
    replied to and followed by phx_close carrying the join's join_ref."""
    api, rt = rt_stack.endpoints()["api"], rt_stack.endpoints()["realtime"]
    anon = (await _create(api, "warmup"))["anon_key"]
    topic = "realtime:room"
    async with v2_client(rt, anon) as client:
        join_ref = await client.join(topic, [], None)
        reply = await client.reply(topic, join_ref)
        assert reply[4] == {"status": "ok", "response": {"postgres_changes": []}}

        fields = [join_ref.encode(), b"9", topic.encode(), b"cursor", b""]
        push = bytes([3, *(len(f) for f in fields), 1]) + b"".join(fields) + b'{"x":5}'
        await client.ws.send(push)
        assert (await client.reply(topic, "9"))[4] == {"status": "ok", "response": {}}

        await client.ws.send(
            json.dumps({"event": "heartbeat", "payload": {}, "topic": "phoenix", "ref": "10"})
        )
        error = await wait_until(lambda: client.find("phoenix", "phx_reply"), 10, "the malformed-frame reply")
        assert error[4]["status"] == "error"
        assert "vsn 2.0.0" in error[4]["response"]["reason"]
        assert "JSON array" in error[4]["response"]["reason"]

        leave = await client.send(join_ref, topic, "phx_leave", {})
        assert (await client.reply(topic, leave))[4]["status"] == "ok"
        close = await wait_until(lambda: client.find(topic, "phx_close"), 10, "phx_close")
        assert close == [join_ref, join_ref, topic, "phx_close", {}]


async def test_vsn_is_negotiated_at_the_handshake(rt_stack: Stack) -> None:
    """No vsn means 1.0.0 (object frames, as before); an unknown vsn is refused with 403 and a
    JSON error naming the versions this server speaks, before the upgrade."""
    api, rt = rt_stack.endpoints()["api"], rt_stack.endpoints()["realtime"]
    anon = (await _create(api, "warmup"))["anon_key"]
    base = f"{rt.replace('http', 'ws', 1)}/socket/websocket?apikey={anon}"
    async with connect(base, open_timeout=10 * UNIT) as ws:
        await ws.send('{"event":"heartbeat","payload":{},"topic":"phoenix","ref":"1","join_ref":null}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10 * UNIT))
    assert reply == {
        "topic": "phoenix",
        "event": "phx_reply",
        "payload": {"status": "ok", "response": {}},
        "ref": "1",
    }
    for vsn in ("3.0.0", "banana"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{base}&vsn={vsn}", open_timeout=10 * UNIT):
                pass
        assert refused.value.response.status_code == 403
        body = json.loads(refused.value.response.body or b"{}")
        assert body["error"].startswith(f"unsupported vsn '{vsn}'") and "2.0.0" in body["error"]
