"""Conformance of serializers 1.0.0 and 2.0.0 on recorded frames of every kind the clients use.

The frames below are literal test data written from the protocol description
(Supabase's "Realtime Protocol" page and ``shared/reference/realtime-protocol.md``):
what ``realtime`` (Python, vsn 1.0.0) and ``@supabase/realtime-js`` (vsn 2.0.0)
put on the wire, and what they expect back.
"""

from __future__ import annotations

import json
import re

import pytest
from progressbench.transports.realtime import wire_v2
from progressbench.transports.realtime.serializer import V1, V2, Serializer, UnsupportedVsn, negotiate
from progressbench.transports.realtime.wire import ClientFrame, FrameError

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYXV0aGVudGljYXRlZCJ9.c2ln"
BINDING = {"event": "INSERT", "schema": "public", "table": "job_events", "filter": "job_id=eq.7"}
JOIN_PAYLOAD = {
    "config": {
        "broadcast": {"ack": False, "self": False},
        "presence": {"key": "", "enabled": False},
        "private": False,
        "postgres_changes": [BINDING],
    },
    "access_token": JWT,
}
TRACK = {"type": "presence", "event": "track", "payload": {"name": "Alice"}}
SEND = {"type": "broadcast", "event": "cursor", "payload": {"x": 5}}

#: The same client messages, as each version carries them: (v1 text, v2 text, decoded).
CLIENT_FRAMES: list[tuple[str, str, ClientFrame]] = [
    (
        json.dumps(
            {
                "event": "phx_join",
                "payload": JOIN_PAYLOAD,
                "topic": "realtime:room1",
                "ref": "1",
                "join_ref": "1",
            }
        ),
        json.dumps(["1", "1", "realtime:room1", "phx_join", JOIN_PAYLOAD]),
        ClientFrame("phx_join", "realtime:room1", JOIN_PAYLOAD, "1", "1"),
    ),
    (
        '{"event":"heartbeat","payload":{},"topic":"phoenix","ref":null,"join_ref":null}',
        '[null,"26","phoenix","heartbeat",{}]',
        ClientFrame("heartbeat", "phoenix", {}, None, None),
    ),
    (
        json.dumps(
            {
                "event": "access_token",
                "payload": {"access_token": JWT},
                "topic": "realtime:room1",
                "ref": "2",
                "join_ref": "1",
            }
        ),
        json.dumps(["1", "2", "realtime:room1", "access_token", {"access_token": JWT}]),
        ClientFrame("access_token", "realtime:room1", {"access_token": JWT}, "2", "1"),
    ),
    (
        '{"event":"phx_leave","payload":{},"topic":"realtime:room1","ref":"3","join_ref":"1"}',
        '["1","3","realtime:room1","phx_leave",{}]',
        ClientFrame("phx_leave", "realtime:room1", {}, "3", "1"),
    ),
    (
        json.dumps(
            {"event": "presence", "payload": TRACK, "topic": "realtime:room1", "ref": "4", "join_ref": "1"}
        ),
        json.dumps(["1", "4", "realtime:room1", "presence", TRACK]),
        ClientFrame("presence", "realtime:room1", TRACK, "4", "1"),
    ),
    (
        json.dumps(
            {"event": "broadcast", "payload": SEND, "topic": "realtime:room1", "ref": "5", "join_ref": "1"}
        ),
        json.dumps(["1", "5", "realtime:room1", "broadcast", SEND]),
        ClientFrame("broadcast", "realtime:room1", SEND, "5", "1"),
    ),
]


def _fix_heartbeat_ref(v1: ClientFrame, v2_text: str) -> ClientFrame:
    """The recorded V2 heartbeat has ref "26" (realtime-js counts refs), the V1 one null."""
    return ClientFrame(v1.event, v1.topic, v1.payload, json.loads(v2_text)[1], v1.join_ref)


@pytest.mark.parametrize(
    ("v1_text", "v2_text", "expected"), CLIENT_FRAMES, ids=lambda v: getattr(v, "event", "")
)
def test_both_versions_decode_the_same_client_message(
    v1_text: str, v2_text: str, expected: ClientFrame
) -> None:
    """join/heartbeat/access_token/leave/presence/broadcast: object (1.0.0) and array (2.0.0) frames
    decode to the same message, so the channel logic never depends on the version."""
    assert V1().decode(v1_text, binary=False) == expected
    assert V2().decode(v2_text, binary=False) == _fix_heartbeat_ref(expected, v2_text)


# The binary broadcast push of Supabase's protocol page: join_ref "10", ref "1", topic
# "realtime:chat-room" (0x12 bytes), user event "user-event" (0x0A), no metadata, JSON payload.
DOCS_PUSH = (
    b"\x03\x02\x01\x12\x0a\x00\x01"
    + b"10"
    + b"1"
    + b"realtime:chat-room"
    + b"user-event"
    + b'{"content":"Hello, World!"}'
)
# A binary payload (encoding 0) with the allowed metadata key realtime-js forwards (persist).
PERSISTED_BYTES = (
    b"\x03\x01\x01\x0e\x04\x10\x00"
    + b"7"
    + b"8"
    + b"realtime:room1"
    + b"blob"
    + b'{"persist":true}'
    + b"\x00\xff"
)
# Phoenix's binary push (kind 0): four sizes, four strings, raw bytes.
RAW_PUSH = b"\x00\x01\x01\x0e\x06" + b"1" + b"9" + b"realtime:room1" + b"upload" + b"\x01\x02\x03"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            DOCS_PUSH,
            ClientFrame(
                "broadcast",
                "realtime:chat-room",
                {"type": "broadcast", "event": "user-event", "payload": {"content": "Hello, World!"}},
                "1",
                "10",
            ),
        ),
        (
            PERSISTED_BYTES,
            ClientFrame(
                "broadcast",
                "realtime:room1",
                {"persist": True, "type": "broadcast", "event": "blob", "payload": b"\x00\xff"},
                "8",
                "7",
            ),
        ),
        (RAW_PUSH, ClientFrame("upload", "realtime:room1", {}, "9", "1", binary=b"\x01\x02\x03")),
    ],
    ids=["docs-json-push", "metadata-binary-payload", "phoenix-push"],
)
def test_v2_decodes_recorded_binary_pushes(raw: bytes, expected: ClientFrame) -> None:
    """Kind 3 (user broadcast push, realtime-js's form of every broadcast) and kind 0 (Phoenix push)."""
    frame = V2().decode(raw, binary=True)
    assert frame == expected
    assert wire_v2.encode_client(frame, binary=True) == raw, "re-encodes to the same bytes"


@pytest.mark.parametrize("frame", [f for _, _, f in CLIENT_FRAMES], ids=lambda f: f.event)
def test_v2_client_frames_round_trip(frame: ClientFrame) -> None:
    """encode_client then decode gives every message back; a broadcast also as a binary frame,
    the way realtime-js sends it; other JSON payloads have no binary form."""
    text = wire_v2.encode_client(frame)
    assert isinstance(text, str) and wire_v2.decode(text, binary=False) == frame
    if frame.event == "broadcast":
        data = wire_v2.encode_client(frame, binary=True)
        assert isinstance(data, bytes) and data[0] == wire_v2.USER_BROADCAST_PUSH
        assert wire_v2.decode(data, binary=True) == frame
    elif frame.payload:
        with pytest.raises(FrameError, match="only a broadcast"):
            wire_v2.encode_client(frame, binary=True)


CHANGE_DATA = {
    "schema": "public",
    "table": "job_events",
    "commit_timestamp": "2026-11-30T11:00:00.000Z",
    "type": "INSERT",
    "columns": [{"name": "seq", "type": "int4"}],
    "record": {"seq": 1},
    "errors": None,
}
SYSTEM_OK = {
    "channel": "room1",
    "extension": "postgres_changes",
    "message": "Subscribed to PostgreSQL",
    "status": "ok",
}
JOINED = {"postgres_changes": [{**BINDING, "id": 83817018}]}


def _server_frames(s: Serializer) -> list[str | bytes]:
    return [
        s.reply("realtime:room1", "1", "1", JOINED),
        s.reply("phoenix", None, "26", {}),
        s.reply("realtime:room1", "1", "6", {"reason": "unmatched topic"}, "error"),
        s.push("realtime:room1", "1", "system", SYSTEM_OK),
        s.change("realtime:room1", [83817018], json.dumps(CHANGE_DATA)),
        s.push("realtime:room1", "1", "phx_close", {}, "1"),
    ]


def test_v1_server_frames_are_the_recorded_objects() -> None:
    """1.0.0 frames are ``{topic, event, payload, ref}`` objects, never with join_ref."""
    recorded = [
        {
            "topic": "realtime:room1",
            "event": "phx_reply",
            "payload": {"status": "ok", "response": JOINED},
            "ref": "1",
        },
        {"topic": "phoenix", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": "26"},
        {
            "topic": "realtime:room1",
            "event": "phx_reply",
            "payload": {"status": "error", "response": {"reason": "unmatched topic"}},
            "ref": "6",
        },
        {"topic": "realtime:room1", "event": "system", "payload": SYSTEM_OK, "ref": None},
        {
            "topic": "realtime:room1",
            "event": "postgres_changes",
            "payload": {"ids": [83817018], "data": CHANGE_DATA},
            "ref": None,
        },
        {"topic": "realtime:room1", "event": "phx_close", "payload": {}, "ref": "1"},
    ]
    frames = _server_frames(V1())
    assert all(isinstance(f, str) for f in frames)
    assert [json.loads(f) for f in frames] == recorded


def test_v2_server_frames_are_the_recorded_arrays_and_decode_back() -> None:
    """2.0.0 frames are ``[join_ref, ref, topic, event, payload]``: replies, system and phx_close
    carry the join's join_ref (realtime-js drops a stale join's phx_close by it), changes none."""
    recorded = [
        ["1", "1", "realtime:room1", "phx_reply", {"status": "ok", "response": JOINED}],
        [None, "26", "phoenix", "phx_reply", {"status": "ok", "response": {}}],
        [
            "1",
            "6",
            "realtime:room1",
            "phx_reply",
            {"status": "error", "response": {"reason": "unmatched topic"}},
        ],
        ["1", None, "realtime:room1", "system", SYSTEM_OK],
        [None, None, "realtime:room1", "postgres_changes", {"ids": [83817018], "data": CHANGE_DATA}],
        ["1", "1", "realtime:room1", "phx_close", {}],
    ]
    frames = _server_frames(V2())
    assert [json.loads(f) for f in frames] == recorded
    for frame, expected in zip(frames, recorded, strict=True):
        assert wire_v2.decode_server(frame) == wire_v2.ServerFrame(*expected)


# The binary broadcast of Supabase's protocol page: topic 0x12, event 0x07, metadata 0x2D, JSON.
DOCS_META = b'{"id":"006554ce-d22d-469c-877a-88bef47214a3"}'
DOCS_BROADCAST = (
    b"\x04\x12\x07\x2d\x01" + b"realtime:chat-room" + b"message" + DOCS_META + b'{"content":"oi"}'
)


def test_v2_broadcast_is_the_recorded_binary_frame_and_decodes_back() -> None:
    """A server broadcast is kind 4: sizes, encoding, topic, event, metadata (the ``meta``), payload."""
    payload = {
        "type": "broadcast",
        "event": "message",
        "payload": {"content": "oi"},
        "meta": {"id": "006554ce-d22d-469c-877a-88bef47214a3"},
    }
    frame = V2().broadcast("realtime:chat-room", payload)
    assert frame == DOCS_BROADCAST
    assert wire_v2.decode_server(frame) == wire_v2.ServerFrame(
        None, None, "realtime:chat-room", "broadcast", payload
    )
    raw = V2().broadcast("realtime:r", {"type": "broadcast", "event": "bin", "payload": b"\x00\x01"})
    assert raw == b"\x04\x0a\x03\x00\x00realtime:rbin\x00\x01", "bytes travel with encoding 0, no metadata"
    assert json.loads(V1().broadcast("realtime:r", {"type": "broadcast", "event": "e", "payload": {}})) == {
        "topic": "realtime:r",
        "event": "broadcast",
        "payload": {"type": "broadcast", "event": "e", "payload": {}},
        "ref": None,
    }


def test_v2_broadcast_falls_back_to_text_when_a_field_exceeds_255_bytes() -> None:
    """A topic too long for a one-byte size cannot be a binary frame: the text array carries it."""
    topic = "realtime:" + "t" * 300
    frame = V2().broadcast(topic, {"type": "broadcast", "event": "e", "payload": {"x": 1}})
    assert isinstance(frame, str)
    assert json.loads(frame) == [
        None,
        None,
        topic,
        "broadcast",
        {"type": "broadcast", "event": "e", "payload": {"x": 1}},
    ]
    with pytest.raises(FrameError, match="at most 255 bytes"):
        wire_v2.encode_client(ClientFrame("broadcast", topic, SEND, "1", "1"), binary=True)


def test_server_binary_replies_and_pushes_decode_like_phoenix_js() -> None:
    """Phoenix's server kinds 0 (push, no ref), 1 (reply, status as event) and 2 (broadcast)."""
    push = b"\x00\x01\x0e\x04" + b"3" + b"realtime:room1" + b"blob" + b"\xaa"
    assert wire_v2.decode_server(push) == wire_v2.ServerFrame("3", None, "realtime:room1", "blob", b"\xaa")
    reply = b"\x01\x01\x01\x0e\x02" + b"3" + b"4" + b"realtime:room1" + b"ok" + b"\xbb"
    assert wire_v2.decode_server(reply) == wire_v2.ServerFrame(
        "3", "4", "realtime:room1", "phx_reply", {"status": "ok", "response": b"\xbb"}
    )
    broadcast = b"\x02\x0e\x04" + b"realtime:room1" + b"blob" + b"\xcc"
    assert wire_v2.decode_server(broadcast) == wire_v2.ServerFrame(
        None, None, "realtime:room1", "blob", b"\xcc"
    )


@pytest.mark.parametrize(
    ("data", "binary", "message"),
    [
        ('{"event":"heartbeat","payload":{},"topic":"phoenix","ref":"1"}', False, "vsn 1.0.0 frame"),
        ('["1","1","realtime:a","phx_join"]', False, "5-element JSON array"),
        ('["1","1","realtime:a","phx_join",{},"extra"]', False, "5-element JSON array"),
        ('["1","1",7,"phx_join",{}]', False, "topic and event must be strings"),
        ('["1","1","realtime:a","phx_join",[1]]', False, "payload must be an object"),
        ('["1",{},"realtime:a","phx_join",{}]', False, "ref/join_ref"),
        ("[not json", False, "not JSON"),
        (b"", True, "empty binary frame"),
        (b"\x03\x02\x01", True, "truncated in its 6-byte header"),
        (b"\x03\x00\x00\x30\x01\x00\x01realtime:a", True, "truncated in its topic"),
        (b"\x03\x00\x00\x02\x01\x00\x01\xff\xfee{}", True, "topic is not UTF-8"),
        (b"\x03\x00\x00\x01\x01\x00\x07te{}", True, "payload encoding must be 0 (binary) or 1 (JSON)"),
        (b"\x03\x00\x00\x01\x01\x00\x01te{oops", True, "user payload is not JSON"),
        (b"\x03\x00\x00\x01\x01\x03\x01te[1]{}", True, "metadata must be a JSON object"),
        (b"\x04\x01\x01\x00\x01te{}", True, "sent by servers, not clients"),
        (b"\x09abc", True, "unknown binary frame kind 9"),
    ],
)
def test_v2_malformed_client_frames_raise_a_clear_frame_error(
    data: str | bytes, binary: bool, message: str
) -> None:
    """Every malformed 2.0.0 frame is a FrameError naming what is wrong, never another exception."""
    with pytest.raises(FrameError, match=re.escape(message)):
        V2().decode(data, binary=binary)


def test_v1_names_vsn_2_when_it_receives_an_array() -> None:
    """A 2.0.0 array on a 1.0.0 socket is refused with the version mix-up spelled out."""
    with pytest.raises(FrameError, match=re.escape("vsn 2.0.0 frame: connect with vsn=2.0.0")):
        V1().decode('[null,"1","phoenix","heartbeat",{}]', binary=False)


@pytest.mark.parametrize(
    ("vsn", "expected"),
    [(None, "1.0.0"), ("1.0.0", "1.0.0"), ("2.0.0", "2.0.0"), ("2.0.3", "2.0.0"), ("1.0.1", "1.0.0")],
)
def test_negotiate_picks_the_serializer_like_phoenix(vsn: str | None, expected: str) -> None:
    """Absent means 1.0.0; any 1.0.x / 2.0.x matches that serializer (Phoenix's ``~>``)."""
    assert negotiate(vsn).vsn == expected


@pytest.mark.parametrize("vsn", ["3.0.0", "2.1.0", "", "2", "latest", "2.0.0-rc1", "x" * 500])
def test_negotiate_refuses_unknown_versions_by_name(vsn: str) -> None:
    """An unknown vsn is refused with the versions this server speaks (and a bounded echo)."""
    with pytest.raises(UnsupportedVsn, match=r"this server speaks 1\.0\.0 and 2\.0\.0") as refused:
        negotiate(vsn)
    assert len(str(refused.value)) < 120
