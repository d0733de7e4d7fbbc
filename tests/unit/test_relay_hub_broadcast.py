"""The hub's broadcast without sockets: each member gets its own protocol's bytes, whatever the mix.

The hub learns each socket's encoding once and writes shared frames; these
tests pin that the bytes stay exactly what each socket's own ``websockets``
protocol would send, message after message, in a room that mixes plain,
shared-deflate and context-keeping sockets, and that a socket's learnt
encoding leaves with it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from progressbench.transports.relay.rooms.config import RoomsConfig
from progressbench.transports.relay.rooms.frames import SHARED_DEFLATE
from progressbench.transports.relay.rooms.hub import RoomHub
from progressbench.transports.relay.rooms.meters import RoomMeters
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.protocol import State
from websockets.server import ServerProtocol

from progressbench.kit.meters import Meters

pytestmark = pytest.mark.timeout(10)

ROOM = uuid.UUID("0b8f7f8e-8d0c-4f4e-9a51-7a1f3c2d9e10")
EVENTS = [{"seq": n, "kind": "step", "message": "x" * 40 * n, "job_id": str(ROOM)} for n in (1, 2, 3)]


def shared_deflate() -> PerMessageDeflate:
    offer = ClientPerMessageDeflateFactory(client_max_window_bits=True).get_request_params()
    _accepted, ext = SHARED_DEFLATE.process_request_params(offer, [])
    assert isinstance(ext, PerMessageDeflate)
    return ext


KINDS: dict[str, Callable[[], list[Extension]]] = {
    "plain": list,
    "shared-deflate": lambda: [shared_deflate()],
    "deflate-with-context": lambda: [PerMessageDeflate(False, False, 12, 12, {"memLevel": 5})],
}


class Wire:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))


class Member:
    """What the hub and websockets' ``broadcast()`` touch of a server connection, over a recorded wire."""

    def __init__(self, extensions: list[Extension], state: State = State.OPEN) -> None:
        self.protocol = ServerProtocol()
        self.protocol.state = state
        self.protocol.extensions = extensions
        self.fragmented_send_waiter = None
        self.transport = Wire()

    def send_data(self) -> None:
        for data in self.protocol.data_to_send():
            self.transport.write(data)


def twin_bytes(kind: str) -> list[bytes]:
    """The frames a lone socket of ``kind`` would send itself for the events' texts, in order."""
    protocol = ServerProtocol()
    protocol.state = State.OPEN
    protocol.extensions = KINDS[kind]()
    out = []
    for event in EVENTS:
        protocol.send_text(json.dumps({"type": "event", **event}, separators=(",", ":")).encode())
        out.append(b"".join(protocol.data_to_send()))
    return out


def test_every_member_of_a_mixed_room_gets_its_own_protocols_bytes() -> None:
    """Plain, shared-deflate and context-keeping sockets interleaved: each gets, message after
    message, exactly what its own protocol would send; one not yet open gets nothing."""
    hub = RoomHub("s" * 32, RoomsConfig(), RoomMeters(Meters("rooms", 1)))
    kinds = [kind for _ in range(3) for kind in KINDS]
    members = [Member(KINDS[kind]()) for kind in kinds]
    opening = Member(KINDS["plain"](), state=State.CONNECTING)
    hub.rooms[ROOM] = {*members, opening}  # type: ignore[arg-type]
    for event in EVENTS:
        assert hub.broadcast(ROOM, dict(event)) == len(members)
    for kind, member in zip(kinds, members, strict=True):
        assert member.transport.sent == twin_bytes(kind), kind
    assert opening.transport.sent == []
    assert opening not in hub.encodings, "an encoding is learnt only once the socket is open"


def test_a_members_learnt_encoding_leaves_with_it() -> None:
    """remove() forgets the socket's encoding: nothing grows with sockets that came and went."""
    hub = RoomHub("s" * 32, RoomsConfig(), RoomMeters(Meters("rooms", 1)))
    members = [Member(KINDS["shared-deflate"]()) for _ in range(4)]
    for member in members:
        hub._add(ROOM, member)  # type: ignore[arg-type]
    hub.broadcast(ROOM, dict(EVENTS[0]))
    assert len(hub.encodings) == 4
    assert len({id(e) for e in hub.encodings.values()}) == 1, "equal encodings are one object"
    for member in members:
        hub.remove(ROOM, member)  # type: ignore[arg-type]
    assert hub.encodings == {} and ROOM not in hub.rooms
