"""The SSE wire format, sans I/O: ``Last-Event-ID`` parsing and an incremental parser.

Both servers name each event by its ``seq`` (``id:``), its kind (``event:``)
and carry the store's event as JSON in ``data:``. The client parser keeps
comment lines (heartbeats) as items of their own: the idle watchdog and the
``Alive`` events need to know that *some* byte arrived, which
``httpx-sse`` hides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Longest Last-Event-ID accepted; a seq never needs more.
MAX_ID_CHARS = 18


class BadLastEventId(ValueError):
    """The ``Last-Event-ID`` header is not a non-negative integer seq."""


def parse_last_event_id(raw: str | None) -> int:
    """Header value -> the seq to continue after; absent or empty means 0 (from the start).

    Raises :class:`BadLastEventId` for anything that is not a plain
    non-negative decimal integer (signs, spaces inside, floats, huge values).
    """
    if raw is None:
        return 0
    value = raw.strip()
    if value == "":
        return 0
    if len(value) > MAX_ID_CHARS or not value.isascii() or not value.isdigit():
        raise BadLastEventId(f"Last-Event-ID must be a non-negative integer seq, got {raw[:40]!r}")
    return int(value)


def event_data(row: dict[str, Any]) -> str:
    """The ``data:`` of one progress event (single line JSON)."""
    return json.dumps(row, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Comment:
    text: str


@dataclass(frozen=True, slots=True)
class Message:
    event: str
    data: str
    id: str | None


@dataclass(frozen=True, slots=True)
class Retry:
    milliseconds: int


Item = Comment | Message | Retry


class SSEParser:
    """Feed bytes in, get complete items out (the WHATWG event-stream rules, minus BOM).

    ``id`` is per message here (the last ``id:`` field of that message), not
    the sticky "last event ID buffer": the watcher keeps its own cursor.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[Item]:
        self._buffer += chunk
        items: list[Item] = []
        while True:
            line, sep, rest = _split_line(self._buffer)
            if not sep:
                break
            self._buffer = rest
            item = self._line(line.decode("utf-8", errors="replace"))
            if item is not None:
                items.append(item)
        return items

    def _line(self, line: str) -> Item | None:
        if line == "":
            if not self._data and self._id is None and not self._event:
                return None
            message = Message(event=self._event or "message", data="\n".join(self._data), id=self._id)
            self._event, self._data, self._id = "", [], None
            return message
        if line.startswith(":"):
            return Comment(line[1:].lstrip(" "))
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            return Retry(int(value))
        return None


def _split_line(buffer: bytes) -> tuple[bytes, bool, bytes]:
    """Split at the first CRLF, LF or CR (a CR at the very end waits for more bytes)."""
    for i, byte in enumerate(buffer):
        if byte == 0x0A:
            return buffer[:i], True, buffer[i + 1 :]
        if byte == 0x0D:
            if i + 1 == len(buffer):
                return buffer, False, b""
            skip = 2 if buffer[i + 1] == 0x0A else 1
            return buffer[:i], True, buffer[i + skip :]
    return buffer, False, b""
