"""Phoenix V1 frames and Realtime JWT checks, as the official client and server expect them."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from progressbench.transports.realtime import wire
from progressbench.transports.realtime.auth import AuthError, issue_anon_key, verify

SECRET = "s" * 32


def test_decode_reads_the_five_keys_the_client_sends() -> None:
    """A client frame's event/payload/topic/ref/join_ref are read; refs are strings or None."""
    text = '{"event":"phx_join","payload":{"config":{}},"topic":"realtime:room1","ref":"1","join_ref":"1"}'
    frame = wire.decode(text)
    assert (frame.event, frame.topic, frame.ref, frame.join_ref) == ("phx_join", "realtime:room1", "1", "1")
    assert frame.payload == {"config": {}}
    hb = wire.decode('{"event":"heartbeat","payload":{},"topic":"phoenix","ref":null,"join_ref":null}')
    assert hb.ref is None and hb.join_ref is None


@pytest.mark.parametrize("text", ["not json", '[null,null,"t","e",{}]', '{"event":1,"topic":"x"}'])
def test_decode_rejects_what_is_not_a_v1_frame(text: str) -> None:
    """V2 array frames, non-JSON and mistyped fields raise FrameError."""
    with pytest.raises(wire.FrameError):
        wire.decode(text)


def test_server_frames_always_carry_ref() -> None:
    """Replies carry a string ref, pushes carry ref null; the client rejects frames without ref."""
    reply = json.loads(wire.reply("realtime:a", "7", {"postgres_changes": []}))
    assert reply == {
        "topic": "realtime:a",
        "event": "phx_reply",
        "payload": {"status": "ok", "response": {"postgres_changes": []}},
        "ref": "7",
    }
    system = json.loads(wire.system("realtime:a", "postgres_changes", "ok", "Subscribed to PostgreSQL"))
    assert system["ref"] is None
    assert system["payload"] == {
        "channel": "a",
        "extension": "postgres_changes",
        "message": "Subscribed to PostgreSQL",
        "status": "ok",
    }
    assert json.loads(wire.close("realtime:a", "3")) == {
        "topic": "realtime:a",
        "event": "phx_close",
        "payload": {},
        "ref": "3",
    }


def test_change_frame_embeds_the_once_encoded_data() -> None:
    """A postgres_changes frame is the channel's ids around data encoded once per change."""
    data = {"type": "INSERT", "record": {"seq": 1}}
    frame = json.loads(wire.change_frame("realtime:x", [5, 9], json.dumps(data)))
    assert frame == {
        "topic": "realtime:x",
        "event": "postgres_changes",
        "payload": {"ids": [5, 9], "data": data},
        "ref": None,
    }


def test_binding_ids_are_stable_nonzero_27_bit() -> None:
    """Identical bindings get the same id whatever the key order; ids are in 1..2**27-1."""
    a = {"event": "INSERT", "schema": "public", "table": "job_events", "filter": "job_id=eq.1"}
    b = dict(reversed(list(a.items())))
    assert wire.binding_id(a) == wire.binding_id(b)
    assert 0 < wire.binding_id(a) < 2**27
    assert wire.binding_id(a) != wire.binding_id({**a, "filter": "job_id=eq.2"})


def test_verify_accepts_the_anon_key_and_rejects_forged_expired_and_roleless_tokens() -> None:
    """HS256 with the project secret; role and exp required; expiry names the seconds."""
    assert verify(SECRET, issue_anon_key(SECRET)).role == "anon"
    now = int(time.time())
    user = jwt.encode({"sub": "u", "role": "authenticated", "exp": now + 60}, SECRET, algorithm="HS256")
    assert verify(SECRET, user).sub == "u"
    forged = jwt.encode({"sub": "u", "role": "authenticated", "exp": now + 60}, "x" * 32, algorithm="HS256")
    with pytest.raises(AuthError, match="InvalidJWTToken"):
        verify(SECRET, forged)
    expired = jwt.encode({"sub": "u", "role": "authenticated", "exp": now - 12}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match=r"Token has expired 1[2-3] seconds ago"):
        verify(SECRET, expired)
    roleless = jwt.encode({"sub": "u", "exp": now + 60}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="`role` and `exp` are required"):
        verify(SECRET, roleless)
    superuser = jwt.encode({"role": "postgres", "exp": now + 60}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="not allowed"):
        verify(SECRET, superuser)
    with pytest.raises(AuthError):
        verify(SECRET, "not-a-jwt")
