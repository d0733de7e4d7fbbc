"""Probe 9: hostile Realtime frames get an error reply on a socket that stays open; joins are capped.

Before the fix a ``filter`` that was not a string (``123``) or any binary
frame dropped the socket (1006) with a traceback in the server's log, and one
socket could join any number of channels (3 sockets × 1,000 unfiltered joins
doubled a victim's delivery time). Now each gets an error ``phx_reply``, and
a socket holds at most Supabase's 100 channels.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from progressbench.transports.realtime.phoenix import MAX_CHANNELS, TOO_MANY_CHANNELS
from websockets.asyncio.client import ClientConnection, connect

from progressbench.app.supervisor import Stack
from tests.helpers import UNIT
from tests.integration.api_client import auth
from tests.integration.conftest import SCALE, running_stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings(r"ignore:ConnectionClosed\.(code|reason) is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("rt"), module_database_url, transports=("realtime",)) as stack:
        yield stack


@pytest.fixture
async def socket(rt: Stack) -> AsyncIterator[ClientConnection]:
    api, url = rt.endpoints()["api"], rt.endpoints()["realtime"]
    body = {"time_scale": SCALE}
    headers = await asyncio.to_thread(auth, api, "probe")
    async with httpx.AsyncClient(timeout=10 * UNIT) as http:
        anon = (await http.post(f"{api}/realtime/jobs", json=body, headers=headers)).json()["anon_key"]
    async with connect(f"{url.replace('http', 'ws', 1)}/socket/websocket?apikey={anon}&vsn=1.0.0") as ws:
        yield ws


def join(topic: str, ref: str, binding: dict[str, Any]) -> str:
    payload = {"config": {"postgres_changes": [{"event": "*", "schema": "public", **binding}]}}
    return json.dumps({"event": "phx_join", "payload": payload, "topic": topic, "ref": ref, "join_ref": ref})


async def next_frame(ws: ClientConnection, **match: Any) -> dict[str, Any]:
    """The next frame whose top-level fields equal ``match`` (others are skipped)."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10 * UNIT))
        if all(frame.get(k) == v for k, v in match.items()):
            return frame


async def still_open(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"event": "heartbeat", "topic": "phoenix", "payload": {}, "ref": "hb"}))
    frame = await next_frame(ws, ref="hb")
    assert frame["payload"]["status"] == "ok"


async def test_a_non_string_filter_gets_an_error_and_the_socket_stays(socket: ClientConnection) -> None:
    await socket.send(join("realtime:a", "1", {"table": "job_events", "filter": 123}))
    frame = await next_frame(socket, event="system", topic="realtime:a")
    assert frame["payload"]["status"] == "error"
    assert "filter" in frame["payload"]["message"]
    await still_open(socket)


async def test_a_binary_frame_gets_an_error_reply_and_the_socket_stays(socket: ClientConnection) -> None:
    await socket.send(b"\x00\xff\x10 not json")
    frame = await next_frame(socket, event="phx_reply", topic="phoenix")
    assert frame["payload"]["status"] == "error"
    await still_open(socket)


async def test_joins_per_socket_are_capped(socket: ClientConnection) -> None:
    """100 channels join; the 101st gets Realtime's ChannelRateLimitReached; a rejoin still works."""
    for i in range(MAX_CHANNELS):
        await socket.send(join(f"realtime:c{i}", f"j{i}", {"table": "job_events"}))
    for i in range(MAX_CHANNELS):
        frame = await next_frame(socket, event="phx_reply", ref=f"j{i}")
        assert frame["payload"]["status"] == "ok"
    await socket.send(join("realtime:one-too-many", "over", {"table": "job_events"}))
    frame = await next_frame(socket, event="phx_reply", ref="over")
    assert frame["payload"] == {"status": "error", "response": {"reason": TOO_MANY_CHANNELS}}
    await socket.send(join("realtime:c0", "again", {"table": "job_events"}))
    frame = await next_frame(socket, event="phx_reply", ref="again")
    assert frame["payload"]["status"] == "ok"
    await still_open(socket)
