"""A published message is framed once per encoding: the shared bytes are each socket's own."""

from __future__ import annotations

import pytest
from progressbench.transports.relay.rooms.frames import SHARED_DEFLATE, SharedFrames, encoding_of
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.frames import OP_TEXT
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol

MESSAGES = [
    b'{"type":"event","seq":1,"kind":"step","message":"parsing"}',
    b'{"type":"event","seq":2,"kind":"step","message":"parsing"}',
    b'{"type":"event","seq":3,"kind":"done","message":"' + b"x" * 3000 + b'"}',
]


def shared_deflate() -> PerMessageDeflate:
    """The extension a server built with :data:`SHARED_DEFLATE` holds once a client offered deflate."""
    offer = ClientPerMessageDeflateFactory(client_max_window_bits=True).get_request_params()
    accepted, ext = SHARED_DEFLATE.process_request_params(offer, [])
    assert ("server_no_context_takeover", None) in accepted
    assert isinstance(ext, PerMessageDeflate)
    return ext


def server_socket(extensions: list[Extension]) -> ServerProtocol:
    protocol = ServerProtocol()
    protocol.state = State.OPEN
    protocol.extensions = extensions
    return protocol


def own_bytes(protocol: ServerProtocol, payload: bytes) -> bytes:
    protocol.send_text(payload)
    return b"".join(protocol.data_to_send())


@pytest.mark.parametrize("make", [list, lambda: [shared_deflate()]], ids=["plain", "deflate"])
def test_shared_frames_are_the_bytes_each_socket_would_send_itself(make: object) -> None:
    """Message after message, every socket of an encoding gets exactly its own protocol's frame."""
    sockets = [server_socket(make()) for _ in range(3)]  # type: ignore[operator]
    for payload in MESSAGES:
        frames = SharedFrames(payload)
        for socket in sockets:
            encoding = encoding_of(socket.extensions)
            assert encoding is not None
            assert frames.frame(encoding, socket.extensions) == own_bytes(socket, payload)
        assert frames.encodings == 1, "one build for the whole room"


def test_a_shared_deflate_frame_decodes_to_the_message_on_its_own() -> None:
    """No context takeover: a phone inflates each frame from a fresh state, whatever came before."""
    ext = shared_deflate()
    encoding = encoding_of([ext])
    assert encoding is not None
    phone = Protocol(Side.CLIENT, state=State.OPEN)
    phone.extensions = [PerMessageDeflate(True, False, 12, 12)]  # what the client side negotiated
    for payload in reversed(MESSAGES):
        data = SharedFrames(payload).frame(encoding, [ext])
        assert data[0] & 0x40, "compressed (rsv1 set)"
        phone.receive_data(data)
        [frame] = phone.events_received()
        assert frame.opcode is OP_TEXT and frame.data == payload


def test_a_compressor_with_context_takes_its_own_path() -> None:
    """Context takeover makes a socket's bytes depend on its history: no shared encoding."""
    with_context = PerMessageDeflate(False, False, 12, 12, {"memLevel": 5})
    assert encoding_of([with_context]) is None
    assert encoding_of([]) == ()
    other_level = PerMessageDeflate(False, True, 12, 12, {"memLevel": 8})
    assert encoding_of([shared_deflate()]) != encoding_of([other_level]), "settings part of the key"


def test_encodings_are_built_once_each() -> None:
    """A room mixing plain and compressed sockets builds two frames per message, not one per socket."""
    frames = SharedFrames(MESSAGES[0])
    deflate = [shared_deflate() for _ in range(5)]
    for ext in deflate:
        frames.frame(encoding_of([ext]), [ext])
    for _ in range(5):
        frames.frame((), [])
    assert frames.encodings == 2
