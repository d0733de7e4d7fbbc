"""One rooms port, two protocols: publishes answered as plain HTTP, joins upgraded, on a real socket."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from progressbench.transports.relay.rooms.config import RoomsConfig
from progressbench.transports.relay.rooms.connection import connection_class
from progressbench.transports.relay.rooms.frames import SHARED_DEFLATE
from progressbench.transports.relay.rooms.http11 import MAX_PUBLISH_BYTES
from progressbench.transports.relay.rooms.hub import RoomHub
from progressbench.transports.relay.rooms.meters import RoomMeters
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from progressbench.core import identity, tokens
from progressbench.kit.meters import Meters

pytestmark = pytest.mark.timeout(30)

SECRET = "s" * 32
SERVICE_SECRET = "v" * 32


@pytest.fixture(params=["websockets-default", "shared-deflate"])
async def rooms(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, int]]:
    """A rooms server with websockets' own deflate (context takeover: each socket encodes its own
    frames) or the service's (no server context takeover: one frame per message, shared)."""
    hub = RoomHub(SECRET, RoomsConfig(), RoomMeters(Meters("rooms", 1)), SERVICE_SECRET)
    extensions = [SHARED_DEFLATE] if request.param == "shared-deflate" else None
    async with serve(
        hub.handler,
        "127.0.0.1",
        0,
        process_request=hub.admit,
        create_connection=connection_class(hub.publish),
        max_size=MAX_PUBLISH_BYTES,
        close_timeout=1.0,
        extensions=extensions,
    ) as server:
        host, port = next(iter(server.sockets)).getsockname()[:2]
        yield host, port


async def exchange(address: tuple[str, int], data: bytes) -> tuple[int, dict[str, object]]:
    """Send raw bytes, read until the server closes; the status and JSON body of its answer."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def publish_bytes(job: uuid.UUID, body: bytes, *, length: int | None = None) -> bytes:
    token = identity.issue_service(SERVICE_SECRET, "rooms")
    return (
        f"POST /parties/main/{job} HTTP/1.1\r\nHost: rooms\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    ).encode() + body


async def test_a_publish_reaches_a_joined_socket_on_the_same_port(rooms: tuple[str, int]) -> None:
    """The upgrade and the publish share a port; the member receives the event, the publisher a count."""
    job = uuid.uuid4()
    url = f"ws://{rooms[0]}:{rooms[1]}/parties/main/{job}?token={tokens.issue(SECRET, 'alice', job)}"
    async with connect(url) as socket:
        status, answer = await exchange(rooms, publish_bytes(job, b'{"seq": 2, "kind": "step"}'))
        assert (status, answer) == (200, {"delivered": 1})
        message = json.loads(await asyncio.wait_for(socket.recv(), 10))
    assert message == {"type": "event", "seq": 2, "kind": "step", "job_id": str(job)}


async def test_every_kind_of_member_reads_every_message_of_a_room(rooms: tuple[str, int]) -> None:
    """Compressing and plain sockets in one room each decode every published message, in order
    (shared frames must not disturb a socket's own compression state, nor it theirs)."""
    job = uuid.uuid4()
    url = f"ws://{rooms[0]}:{rooms[1]}/parties/main/{job}?token={tokens.issue(SECRET, 'alice', job)}"
    sockets = [await connect(url, compression=c) for c in ("deflate", None, "deflate", None)]
    try:
        for seq in range(1, 4):
            body = json.dumps({"seq": seq, "kind": "step", "message": "x" * 40 * seq}).encode()
            assert await exchange(rooms, publish_bytes(job, body)) == (200, {"delivered": 4})
        for socket in sockets:
            seqs = [json.loads(await asyncio.wait_for(socket.recv(), 10))["seq"] for _ in range(3)]
            assert seqs == [1, 2, 3]
    finally:
        await asyncio.gather(*(s.close() for s in sockets))


async def test_bounds_and_malformed_publishes_get_a_4xx_answer(rooms: tuple[str, int]) -> None:
    """An oversized event is 413 before its body is sent; a broken request line is 400."""
    status, answer = await exchange(rooms, publish_bytes(uuid.uuid4(), b"", length=MAX_PUBLISH_BYTES + 1))
    assert (status, answer) == (413, {"detail": "event too large"})
    status, _ = await exchange(rooms, b"POST /parties/main/x\r\n\r\n")
    assert status == 400
    status, answer = await exchange(rooms, publish_bytes(uuid.uuid4(), b"[]"))
    assert (status, answer) == (400, {"detail": "body must be a JSON event with a seq"})
