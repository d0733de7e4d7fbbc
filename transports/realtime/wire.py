"""Phoenix V1 JSON frames as the Supabase Realtime protocol uses them (pure, no I/O).

Client frames carry ``event, payload, topic, ref, join_ref``; server frames
are ``{"topic", "event", "payload", "ref"}`` and always carry ``ref`` (the
official Python client rejects a frame without it, and wants a *string* ref
on replies). Binding ids are deterministic 27-bit hashes of the binding map,
never 0, like Realtime's ``:erlang.phash2``: identical bindings get the same
id on every connection.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PHOENIX_TOPIC = "phoenix"
TOPIC_PREFIX = "realtime:"
BINDING_ID_MASK = (1 << 27) - 1
LISTEN_EVENTS = frozenset({"*", "INSERT", "UPDATE", "DELETE"})


class FrameError(ValueError):
    """A frame that is not a Phoenix client message of the socket's serializer version."""


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """A client message, whatever serializer carried it (see ``serializer.py``)."""

    event: str
    topic: str
    payload: dict[str, Any]
    ref: str | None
    join_ref: str | None
    #: The raw payload of a vsn 2.0.0 binary push (kind 0); ``payload`` is then empty.
    binary: bytes | None = None


def opt_ref(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int):
        return str(value)
    raise FrameError("ref/join_ref must be a string, a number or null")


def decode(text: str | bytes) -> ClientFrame:
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if isinstance(raw, list):
        raise FrameError(
            "a V1 frame is a JSON object (vsn 1.0.0), got a JSON array "
            "(a vsn 2.0.0 frame: connect with vsn=2.0.0 to send those)"
        )
    if not isinstance(raw, dict):
        raise FrameError("a V1 frame is a JSON object (vsn 1.0.0)")
    event, topic, payload = raw.get("event"), raw.get("topic"), raw.get("payload", {})
    if not isinstance(event, str) or not isinstance(topic, str):
        raise FrameError("event and topic must be strings")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise FrameError("payload must be an object")
    return ClientFrame(event, topic, payload, opt_ref(raw.get("ref")), opt_ref(raw.get("join_ref")))


def encode(topic: str, event: str, payload: Mapping[str, Any], ref: str | None = None) -> str:
    return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref}, separators=(",", ":"))


def reply(topic: str, ref: str | None, response: Mapping[str, Any], status: str = "ok") -> str:
    return encode(topic, "phx_reply", {"status": status, "response": response}, ref)


def system_payload(topic: str, extension: str, status: str, message: str) -> dict[str, str]:
    """The four keys the client requires on a ``system`` message (any serializer)."""
    return {"channel": channel_name(topic), "extension": extension, "message": message, "status": status}


def system(topic: str, extension: str, status: str, message: str) -> str:
    return encode(topic, "system", system_payload(topic, extension, status, message))


def close(topic: str, join_ref: str | None) -> str:
    return encode(topic, "phx_close", {}, join_ref)


def change_frame(topic: str, ids: list[int], data_json: str) -> str:
    """A ``postgres_changes`` push; ``data_json`` is encoded once per change and reused."""
    head = json.dumps(topic)
    id_list = ",".join(str(i) for i in ids)
    return (
        f'{{"topic":{head},"event":"postgres_changes",'
        f'"payload":{{"ids":[{id_list}],"data":{data_json}}},"ref":null}}'
    )


def channel_name(topic: str) -> str:
    return topic.removeprefix(TOPIC_PREFIX)


def binding_id(binding: Mapping[str, Any]) -> int:
    """A stable id in 1..2**27-1 for a binding map (key order does not matter)."""
    canonical = json.dumps(binding, sort_keys=True, separators=(",", ":"), default=str)
    return (zlib.crc32(canonical.encode()) & BINDING_ID_MASK) or 1
