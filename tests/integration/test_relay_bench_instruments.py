"""bench_relay's instruments on real sockets: the reader process times only what it verified.

The readers (``benchmarks/relay_instruments.py readers``) are the measuring
instrument of the relay benchmark, and the broadcast server is its same-run
reference; a reader that timed whatever arrived, or skipped the handshake,
would make the figure meaningless, so both are pinned here against a real
room server and a real ``websockets`` server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from progressbench.transports.relay.rooms.config import RoomsConfig
from progressbench.transports.relay.rooms.connection import connection_class
from progressbench.transports.relay.rooms.frames import SHARED_DEFLATE
from progressbench.transports.relay.rooms.hub import RoomHub
from progressbench.transports.relay.rooms.meters import RoomMeters
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from progressbench.core import identity, tokens
from progressbench.kit.meters import Meters
from tests.helpers import UNIT

pytestmark = pytest.mark.timeout(60 * UNIT)

INSTRUMENTS = Path(__file__).resolve().parents[2] / "benchmarks" / "relay_instruments.py"
SECRET = "s" * 32
SERVICE_SECRET = "v" * 32


@pytest.fixture
async def rooms() -> AsyncIterator[tuple[str, int]]:
    """The room server's parts (hub, publish-on-the-room-port, shared deflate) on an OS-picked port."""
    hub = RoomHub(SECRET, RoomsConfig(), RoomMeters(Meters("rooms", 1)), SERVICE_SECRET)
    async with serve(
        hub.handler,
        "127.0.0.1",
        0,
        process_request=hub.admit,
        create_connection=connection_class(hub.publish),
        extensions=[SHARED_DEFLATE],
        close_timeout=1.0,
    ) as server:
        host, port = next(iter(server.sockets)).getsockname()[:2]
        yield host, port


async def instrument(mode: str) -> asyncio.subprocess.Process:
    """``relay_instruments.py MODE`` spoken to over its stdin and stdout, as bench_relay.py does
    (a reader's answer line holds every latency: the stream's line limit is raised for it)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(INSTRUMENTS),
        mode,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 24,
    )


class Readers:
    """One reader process, spoken to as bench_relay.py does (a JSON line each way)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, port: int, members: list[tuple[str, str]], messages: int) -> Readers:
        process = await instrument("readers")
        spec = {"host": "127.0.0.1", "port": port, "members": members, "messages": messages}
        spec["bound_s"] = 20 * UNIT
        assert process.stdin is not None
        process.stdin.write(json.dumps(spec).encode() + b"\n")
        return cls(process)

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), 30 * UNIT)
        assert raw, "the reader process ended without answering"
        answer: dict[str, Any] = json.loads(raw)
        return answer

    async def finish(self) -> int:
        return await asyncio.wait_for(self.process.wait(), 30 * UNIT)


def room_member(room: uuid.UUID, who: str = "alice") -> tuple[str, str]:
    return f"/parties/main/{room}?token={tokens.issue(SECRET, who, room)}", str(room)


async def test_readers_time_every_message_a_room_publishes_after_checking_it(
    rooms: tuple[str, int],
) -> None:
    """30 sockets × 3 publishes through the real room code: 90 verified latencies, nothing wrong."""
    room = uuid.uuid4()
    readers = await Readers.start(rooms[1], [room_member(room)] * 30, 3)
    assert (await readers.line())["opened"] == 30
    service = identity.issue_service(SERVICE_SECRET, "rooms")
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {service}"}) as http:
        for seq in (1, 2, 3):
            body = {"seq": seq, "kind": "step", "message": "m", "payload": {"sent_ns": 1}}
            response = await http.post(f"http://127.0.0.1:{rooms[1]}/parties/main/{room}", json=body)
            assert response.json() == {"delivered": 30}
    got = await readers.line()
    assert await readers.finish() == 0
    assert (got["expected"], len(got["latency_ms"]), got["bad"], got["closed"]) == (90, 90, 0, 0)
    if sys.platform == "linux":
        assert len(got["arrival_ms"]) == 90  # the kernel's stamps, beside the reader's


async def test_readers_refuse_to_time_wrong_messages_from_the_broadcast_reference() -> None:
    """Through the reference server: a skipped seq and another room's event are counted wrong,
    with the reason, and only the right message is timed."""
    server = await instrument("broadcast")
    try:
        assert server.stdout is not None
        port = json.loads(await asyncio.wait_for(server.stdout.readline(), 30 * UNIT))["port"]
        room, other = uuid.uuid4(), uuid.uuid4()
        readers = await Readers.start(port, [(f"/parties/main/{room}", str(room))] * 5, 3)
        assert (await readers.line())["opened"] == 5
        async with connect(f"ws://127.0.0.1:{port}/publish") as publisher:
            for job, seq in ((room, 1), (room, 3), (other, 2)):
                event = {"type": "event", "seq": seq, "payload": {"sent_ns": 1}, "job_id": str(job)}
                await publisher.send(json.dumps(event))
        got = await readers.line()
        assert await readers.finish() == 0
    finally:
        assert server.stdin is not None
        server.stdin.close()  # the reference server's signal to stop
        assert await asyncio.wait_for(server.wait(), 30 * UNIT) == 0
    assert (len(got["latency_ms"]), got["bad"]) == (5, 10)
    assert "seq 3 where 2 was next" in got["reasons"]
    assert f"an event of room {str(other)!r}" in got["reasons"]


async def test_readers_do_the_real_handshake_and_report_a_refused_join(rooms: tuple[str, int]) -> None:
    """A token for another room is refused by the room server's join policy; the readers say so."""
    room = uuid.uuid4()
    wrong = f"/parties/main/{room}?token={tokens.issue(SECRET, 'alice', uuid.uuid4())}"
    readers = await Readers.start(rooms[1], [room_member(room), (wrong, str(room))], 1)
    answer = await readers.line()
    assert await readers.finish() == 1
    assert "handshake refused 403" in answer["error"]
