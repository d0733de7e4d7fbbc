"""Phoenix serializer vsn 2.0.0 as Supabase Realtime speaks it (pure, no I/O).

Text frames are JSON arrays ``[join_ref, ref, topic, event, payload]`` in both
directions. Binary frames start with a one-byte *kind*; every length that
follows is one unsigned byte counting the UTF-8 bytes of its field (so each
field is at most 255 bytes):

========================  =========  ==============================================================
kind                      direction  layout after the kind byte
========================  =========  ==============================================================
0 push                    client →   join_ref, ref, topic, event sizes; the four strings; raw payload
                          → client   join_ref, topic, event sizes (no ref); the three strings; payload
1 reply                   → client   join_ref, ref, topic, status sizes; the four strings; raw response
2 broadcast               → client   topic, event sizes; the two strings; raw payload
3 user broadcast push     client →   join_ref, ref, topic, user event, metadata sizes; payload
                                     encoding (0 binary, 1 JSON); the five strings; user payload
4 user broadcast          → client   topic, user event, metadata sizes; payload encoding; the three
                                     strings; user payload
========================  =========  ==============================================================

Kinds 0-2 are Phoenix's binary layout (phoenix ``assets/js/phoenix/serializer.js``
and ``Phoenix.Socket.V2.JSONSerializer``); kinds 3 and 4 are Supabase's
(supabase.com/docs/guides/realtime/protocol, "Binary frames", read 2026-11-30).
``@supabase/realtime-js`` 2.119 sends *every* ``broadcast`` whose payload
names an ``event`` as kind 3, and understands only kind 4 among binary frames.

Kind 3's metadata is the JSON of the message payload's extra top-level keys
(the client keeps only allowed ones, e.g. ``persist``); decoding merges them
back, so the payload is the one the client's app passed to ``send``. Kind 4's
metadata becomes the broadcast payload's ``meta`` (``{id, replayed}``), as the
client decodes it. An empty ``join_ref``/``ref`` in a binary frame is ``null``.

The server side uses :func:`decode` (client frames) and the ``encode_*``
functions; :func:`encode_client` and :func:`decode_server` are the client's
half, for conformance tests and test clients.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from progressbench.transports.realtime.wire import ClientFrame, FrameError, opt_ref

VSN = "2.0.0"
PUSH, REPLY, BROADCAST, USER_BROADCAST_PUSH, USER_BROADCAST = 0, 1, 2, 3, 4
BINARY_ENCODING, JSON_ENCODING = 0, 1
MAX_FIELD = 255


@dataclass(frozen=True, slots=True)
class ServerFrame:
    """A server → client message as a 2.0.0 client sees it after decoding."""

    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any


# ------------------------------------------------------------------ decoding helpers


class _Reader:
    """Bounds-checked reads over one binary frame; every failure is a :class:`FrameError`."""

    def __init__(self, data: bytes, kind_name: str) -> None:
        self.data, self.pos, self.kind_name = data, 1, kind_name

    def sizes(self, n: int) -> list[int]:
        if len(self.data) < self.pos + n:
            raise FrameError(f"binary {self.kind_name} frame truncated in its {n}-byte header")
        out = list(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def text(self, size: int, what: str) -> str:
        end = self.pos + size
        if end > len(self.data):
            raise FrameError(f"binary {self.kind_name} frame truncated in its {what}")
        try:
            value = self.data[self.pos : end].decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(f"binary {self.kind_name} frame: {what} is not UTF-8") from None
        self.pos = end
        return value

    def rest(self) -> bytes:
        return self.data[self.pos :]


def _json(raw: bytes | str, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"{what} is not JSON: {exc}") from None


def _user_payload(raw: bytes, encoding: int) -> Any:
    if encoding == JSON_ENCODING:
        return _json(raw, "user payload")
    if encoding == BINARY_ENCODING:
        return raw
    raise FrameError(f"payload encoding must be 0 (binary) or 1 (JSON), got {encoding}")


def _metadata(text: str) -> dict[str, Any]:
    if not text:
        return {}
    meta = _json(text, "metadata")
    if not isinstance(meta, dict):
        raise FrameError("metadata must be a JSON object")
    return meta


def _text_array(text: str | bytes, who: str) -> list[Any]:
    raw = _json(text, "frame")
    if isinstance(raw, dict):
        raise FrameError(
            f"a vsn 2.0.0 {who} frame is a JSON array [join_ref, ref, topic, event, payload], "
            "got a JSON object (a vsn 1.0.0 frame: connect with vsn=1.0.0 to send those)"
        )
    if not isinstance(raw, list) or len(raw) != 5:
        raise FrameError(
            f"a vsn 2.0.0 {who} frame is a 5-element JSON array [join_ref, ref, topic, event, payload]"
        )
    if not isinstance(raw[2], str) or not isinstance(raw[3], str):
        raise FrameError("topic and event must be strings")
    return raw


# ------------------------------------------------------------------ server side


def decode(data: str | bytes, *, binary: bool | None = None) -> ClientFrame:
    """A client frame: a text frame's JSON array, or a binary push (kind 0 or 3).

    ``binary`` says which websocket frame type carried ``data``; ``None``
    infers it from the Python type (``bytes`` = binary frame).
    """
    if binary is None:
        binary = isinstance(data, bytes)
    if not binary:
        join_ref, ref, topic, event, payload = _text_array(data, "client")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise FrameError("payload must be an object")
        return ClientFrame(event, topic, payload, opt_ref(ref), opt_ref(join_ref))
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if not raw:
        raise FrameError("empty binary frame")
    kind = raw[0]
    if kind == PUSH:
        r = _Reader(raw, "push")
        jr, rf, tp, ev = r.sizes(4)
        join_ref, ref = r.text(jr, "join_ref"), r.text(rf, "ref")
        topic, event = r.text(tp, "topic"), r.text(ev, "event")
        return ClientFrame(event, topic, {}, ref or None, join_ref or None, binary=r.rest())
    if kind == USER_BROADCAST_PUSH:
        r = _Reader(raw, "user broadcast push")
        jr, rf, tp, ue, md, encoding = r.sizes(6)
        join_ref, ref = r.text(jr, "join_ref"), r.text(rf, "ref")
        topic, user_event = r.text(tp, "topic"), r.text(ue, "user event")
        meta = _metadata(r.text(md, "metadata"))
        body = _user_payload(r.rest(), encoding)
        payload = {**meta, "type": "broadcast", "event": user_event, "payload": body}
        return ClientFrame("broadcast", topic, payload, ref or None, join_ref or None)
    if kind in (REPLY, BROADCAST, USER_BROADCAST):
        raise FrameError(f"binary frame kind {kind} is sent by servers, not clients")
    raise FrameError(f"unknown binary frame kind {kind} (clients send 0 push or 3 user broadcast push)")


def encode(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    """A text frame, in the array order every 2.0.0 peer expects."""
    return json.dumps([join_ref, ref, topic, event, payload], separators=(",", ":"))


def encode_reply(
    topic: str, join_ref: str | None, ref: str | None, response: Mapping[str, Any], status: str = "ok"
) -> str:
    return encode(join_ref, ref, topic, "phx_reply", {"status": status, "response": response})


def encode_change(topic: str, ids: list[int], data_json: str) -> str:
    """A ``postgres_changes`` push (no join_ref, no ref); ``data_json`` is encoded once per change."""
    id_list = ",".join(str(i) for i in ids)
    return f'[null,null,{json.dumps(topic)},"postgres_changes",{{"ids":[{id_list}],"data":{data_json}}}]'


def encode_broadcast(topic: str, payload: Mapping[str, Any]) -> str | bytes:
    """A broadcast push: binary kind 4 when its fields fit, else the text frame.

    ``payload`` is ``{type: "broadcast", event, payload, meta?}``; a ``bytes``
    user payload travels with encoding 0, anything else as JSON.
    """
    user_event = payload.get("event")
    meta = payload.get("meta")
    body = payload.get("payload")
    if not isinstance(user_event, str):
        return encode(None, None, topic, "broadcast", _jsonable(payload))
    meta_b = json.dumps(meta, separators=(",", ":")).encode() if meta else b""
    fields = [topic.encode(), user_event.encode(), meta_b]
    if any(len(f) > MAX_FIELD for f in fields):
        return encode(None, None, topic, "broadcast", _jsonable(payload))
    if isinstance(body, bytes | bytearray):
        encoding, data = BINARY_ENCODING, bytes(body)
    else:
        encoding, data = JSON_ENCODING, json.dumps(body, separators=(",", ":")).encode()
    header = bytes([USER_BROADCAST, *(len(f) for f in fields), encoding])
    return header + b"".join(fields) + data


def _jsonable(payload: Mapping[str, Any]) -> dict[str, Any]:
    body = payload.get("payload")
    if isinstance(body, bytes | bytearray):
        raise FrameError("a binary broadcast payload needs a binary frame (fields over 255 bytes)")
    return dict(payload)


# ------------------------------------------------------------------ client side (tests)


def encode_client(frame: ClientFrame, *, binary: bool = False) -> str | bytes:
    """A client frame as a 2.0.0 client sends it: text, or binary (kind 3 for a broadcast, else 0)."""
    if not binary:
        return encode(frame.join_ref, frame.ref, frame.topic, frame.event, frame.payload)
    refs = [(frame.join_ref or "").encode(), (frame.ref or "").encode(), frame.topic.encode()]
    if frame.event == "broadcast" and isinstance(frame.payload.get("event"), str):
        extra = {k: v for k, v in frame.payload.items() if k not in ("type", "event", "payload")}
        meta = json.dumps(extra, separators=(",", ":")).encode() if extra else b""
        fields = [*refs, frame.payload["event"].encode(), meta]
        body = frame.payload.get("payload")
        if isinstance(body, bytes | bytearray):
            encoding, data = BINARY_ENCODING, bytes(body)
        else:
            encoding, data = JSON_ENCODING, json.dumps(body, separators=(",", ":")).encode()
        _check_sizes(fields)
        return bytes([USER_BROADCAST_PUSH, *(len(f) for f in fields), encoding]) + b"".join(fields) + data
    if frame.payload:
        raise FrameError("only a broadcast or a raw-bytes push has a binary form; JSON payloads go as text")
    fields = [*refs, frame.event.encode()]
    _check_sizes(fields)
    return bytes([PUSH, *(len(f) for f in fields)]) + b"".join(fields) + (frame.binary or b"")


def _check_sizes(fields: list[bytes]) -> None:
    if any(len(f) > MAX_FIELD for f in fields):
        raise FrameError(f"a binary frame field is at most {MAX_FIELD} bytes")


def decode_server(data: str | bytes, *, binary: bool | None = None) -> ServerFrame:
    """A server frame as a 2.0.0 client decodes it (text array, or binary kinds 0, 1, 2, 4)."""
    if binary is None:
        binary = isinstance(data, bytes)
    if not binary:
        join_ref, ref, topic, event, payload = _text_array(data, "server")
        return ServerFrame(opt_ref(join_ref), opt_ref(ref), topic, event, payload)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if not raw:
        raise FrameError("empty binary frame")
    kind = raw[0]
    if kind == USER_BROADCAST:
        r = _Reader(raw, "user broadcast")
        tp, ue, md, encoding = r.sizes(4)
        topic, user_event = r.text(tp, "topic"), r.text(ue, "user event")
        meta_text = r.text(md, "metadata")
        message: dict[str, Any] = {"type": "broadcast", "event": user_event}
        message["payload"] = _user_payload(r.rest(), encoding)
        if meta_text:
            message["meta"] = _metadata(meta_text)
        return ServerFrame(None, None, topic, "broadcast", message)
    if kind == REPLY:
        r = _Reader(raw, "reply")
        jr, rf, tp, st = r.sizes(4)
        join_ref, ref = r.text(jr, "join_ref"), r.text(rf, "ref")
        topic, status = r.text(tp, "topic"), r.text(st, "status")
        return ServerFrame(
            join_ref or None, ref or None, topic, "phx_reply", {"status": status, "response": r.rest()}
        )
    if kind == BROADCAST:
        r = _Reader(raw, "broadcast")
        tp, ev = r.sizes(2)
        topic, event = r.text(tp, "topic"), r.text(ev, "event")
        return ServerFrame(None, None, topic, event, r.rest())
    if kind == PUSH:  # the server's push has no ref
        r = _Reader(raw, "push")
        jr, tp, ev = r.sizes(3)
        join_ref, topic, event = r.text(jr, "join_ref"), r.text(tp, "topic"), r.text(ev, "event")
        return ServerFrame(join_ref or None, None, topic, event, r.rest())
    if kind == USER_BROADCAST_PUSH:
        raise FrameError(f"binary frame kind {kind} is sent by clients, not servers")
    raise FrameError(f"unknown binary frame kind {kind}")
