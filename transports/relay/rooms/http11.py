"""The one plain-HTTP request a room socket answers, a publish: read sans-I/O, with hard bounds.

The ``websockets`` server parses nothing but GET upgrades: its request
parser refuses any other method, and any body, before ``process_request``
could see the request. So a ``POST /parties/main/<job_id>`` arriving on the
rooms' port is recognised by its first bytes (:func:`starts_post`) and read
here instead: bytes in (:meth:`RequestReader.feed`), a complete
:class:`PublishRequest` or a :class:`Refusal` out, nothing else.

One request per connection (the answer closes it). Whatever the peer sends,
the reader holds at most a head of :data:`MAX_HEAD_BYTES` (else ``431``)
and a body of :data:`MAX_PUBLISH_BYTES` (else ``413``), and a malformed
request gets a ``4xx`` naming what is wrong: a bad request line or header
line (``400``), another method (``405``), a missing or doubtful length
(``400``, or ``411`` for a chunked body). A peer that stalls mid-request is
cut by the server's opening-handshake timeout, not here.
"""

from __future__ import annotations

import http
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_HEAD_BYTES = 16 * 1024
"""Request line and headers, up to and including the blank line."""
MAX_PUBLISH_BYTES = 64 * 1024
"""One event's body (the same bound caps a WebSocket message)."""

_POST = b"POST "
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """A complete publish: the request target, headers (names lower-cased) and the body."""

    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request cannot be served: the status to answer and the detail given with it."""

    status: int
    detail: str


def starts_post(first: bytes) -> bool:
    """Whether a connection's first bytes can only begin a ``POST`` (never a GET upgrade).

    Decided on the first read, however short: ``b"PO"`` already rules out
    ``GET``; the reader then insists on the rest of the method.
    """
    return _POST.startswith(first[: len(_POST)])


class RequestReader:
    """Accumulates the bytes of one request until it is complete or known to be bad."""

    def __init__(self, *, max_head: int = MAX_HEAD_BYTES, max_body: int = MAX_PUBLISH_BYTES) -> None:
        self._max_head = max_head
        self._max_body = max_body
        self._buffer = bytearray()
        self._head: tuple[str, dict[str, str], int] | None = None
        self._body_start = 0
        self._done = False

    def feed(self, data: bytes) -> PublishRequest | Refusal | None:
        """Add bytes; the request once complete, a refusal as soon as it is bad, else ``None``.

        After a result has been returned, further bytes are dropped unread
        and ``None`` is returned: the caller has answered and is closing.
        """
        if self._done:
            return None
        self._buffer += data
        outcome = self._advance()
        if outcome is not None:
            self._done = True
            self._buffer.clear()
        return outcome

    def _advance(self) -> PublishRequest | Refusal | None:
        if self._head is None:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self._buffer) > self._max_head:
                    return Refusal(431, "request head too large")
                return None
            if head_end + 4 > self._max_head:
                return Refusal(431, "request head too large")
            head = parse_head(bytes(self._buffer[:head_end]), self._max_body)
            if isinstance(head, Refusal):
                return head
            self._head = head
            self._body_start = head_end + 4
        path, headers, length = self._head
        if len(self._buffer) - self._body_start < length:
            return None
        body = bytes(self._buffer[self._body_start : self._body_start + length])
        return PublishRequest(path, headers, body)


def parse_head(head: bytes, max_body: int = MAX_PUBLISH_BYTES) -> tuple[str, dict[str, str], int] | Refusal:
    """The target, headers and body length of a request head (without its blank line)."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[1] or not parts[2].startswith("HTTP/1."):
        return Refusal(400, "malformed request line")
    method, path, _version = parts
    if method != "POST":
        return Refusal(405, "a room takes POST (publish) or a WebSocket upgrade")
    headers: dict[str, str] = {}
    lengths: set[str] = set()
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or not set(name) <= _TOKEN:
            return Refusal(400, "malformed header line")
        name, value = name.lower(), value.strip(" \t")
        if name == "content-length":
            lengths.add(value)
        headers[name] = value
    if "transfer-encoding" in headers:
        return Refusal(411, "a publish needs a Content-Length (no chunked bodies)")
    if len(lengths) > 1 or not all(value.isascii() and value.isdigit() for value in lengths):
        return Refusal(400, "bad Content-Length")
    length = int(lengths.pop()) if lengths else 0
    if length > max_body:
        return Refusal(413, "event too large")
    return path, headers, length


def response_bytes(status: int, answer: Mapping[str, Any]) -> bytes:
    """A complete HTTP/1.1 response with a JSON body, closing the connection."""
    payload = json.dumps(answer).encode()
    reason = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
    ).encode()
    return head + payload
