"""The socket's serializer, negotiated once from the handshake's ``vsn`` query parameter (pure).

Phoenix picks a serializer per socket from ``vsn`` (default ``1.0.0``) and
refuses the connection when none matches; Supabase Realtime offers ``1.0.0``
(JSON objects, :mod:`.wire`) and ``2.0.0`` (JSON arrays plus binary
broadcasts, :mod:`.wire_v2`). Like Phoenix's ``~> 1.0.0`` / ``~> 2.0.0``
requirements, any ``1.0.x`` or ``2.0.x`` is accepted; anything else, an empty
value included, is :class:`UnsupportedVsn`, which the service answers with a
403 before the upgrade.

Both serializers offer the same operations, so the channel code never asks
which one it has. What differs, besides the framing: a 2.0.0 frame carries the
``join_ref`` of the join it belongs to (replies, ``system``, ``phx_close``),
which the JS client uses to ignore a stale join's ``phx_close``; the 1.0.0
serializer never emits ``join_ref`` (the Python client needs ``ref`` only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from progressbench.transports.realtime import wire, wire_v2
from progressbench.transports.realtime.wire import ClientFrame

DEFAULT_VSN = "1.0.0"
SUPPORTED = ("1.0.0", "2.0.0")
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")


class UnsupportedVsn(ValueError):
    """The handshake asked for a serializer version this server does not speak."""


class Serializer(Protocol):
    """Client frames in, server frames out, for one socket."""

    @property
    def vsn(self) -> str: ...

    def decode(self, data: str | bytes, *, binary: bool) -> ClientFrame: ...

    def reply(
        self,
        topic: str,
        join_ref: str | None,
        ref: str | None,
        response: Mapping[str, Any],
        status: str = "ok",
    ) -> str: ...

    def push(
        self, topic: str, join_ref: str | None, event: str, payload: Mapping[str, Any], ref: str | None = None
    ) -> str: ...

    def change(self, topic: str, ids: list[int], data_json: str) -> str: ...

    def broadcast(self, topic: str, payload: Mapping[str, Any]) -> str | bytes: ...


class V1:
    """vsn 1.0.0: ``{"topic", "event", "payload", "ref"}`` objects; binary frames read as UTF-8 JSON."""

    vsn = "1.0.0"

    def decode(self, data: str | bytes, *, binary: bool) -> ClientFrame:
        return wire.decode(data)

    def reply(
        self,
        topic: str,
        join_ref: str | None,
        ref: str | None,
        response: Mapping[str, Any],
        status: str = "ok",
    ) -> str:
        return wire.reply(topic, ref, response, status)

    def push(
        self, topic: str, join_ref: str | None, event: str, payload: Mapping[str, Any], ref: str | None = None
    ) -> str:
        return wire.encode(topic, event, payload, ref)

    def change(self, topic: str, ids: list[int], data_json: str) -> str:
        return wire.change_frame(topic, ids, data_json)

    def broadcast(self, topic: str, payload: Mapping[str, Any]) -> str:
        return wire.encode(topic, "broadcast", payload)


class V2:
    """vsn 2.0.0: ``[join_ref, ref, topic, event, payload]`` arrays and binary broadcasts."""

    vsn = wire_v2.VSN

    def decode(self, data: str | bytes, *, binary: bool) -> ClientFrame:
        return wire_v2.decode(data, binary=binary)

    def reply(
        self,
        topic: str,
        join_ref: str | None,
        ref: str | None,
        response: Mapping[str, Any],
        status: str = "ok",
    ) -> str:
        return wire_v2.encode_reply(topic, join_ref, ref, response, status)

    def push(
        self, topic: str, join_ref: str | None, event: str, payload: Mapping[str, Any], ref: str | None = None
    ) -> str:
        return wire_v2.encode(join_ref, ref, topic, event, payload)

    def change(self, topic: str, ids: list[int], data_json: str) -> str:
        return wire_v2.encode_change(topic, ids, data_json)

    def broadcast(self, topic: str, payload: Mapping[str, Any]) -> str | bytes:
        return wire_v2.encode_broadcast(topic, payload)


def negotiate(vsn: str | None) -> Serializer:
    """The serializer for the handshake's ``vsn`` (absent: 1.0.0), or :class:`UnsupportedVsn`."""
    requested = DEFAULT_VSN if vsn is None else vsn
    match = _SEMVER.fullmatch(requested)
    if match is not None:
        major, minor = int(match[1]), int(match[2])
        if (major, minor) == (1, 0):
            return V1()
        if (major, minor) == (2, 0):
            return V2()
    shown = requested if len(requested) <= 40 else requested[:40] + "..."
    raise UnsupportedVsn(f"unsupported vsn {shown!r}: this server speaks {' and '.join(SUPPORTED)}")
