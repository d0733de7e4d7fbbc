"""The rooms' publish path without sockets: the HTTP reader's bounds, who may publish, the hub's answer."""

from __future__ import annotations

import json
import uuid

import pytest
from progressbench.transports.relay.rooms.config import RoomsConfig
from progressbench.transports.relay.rooms.http11 import (
    MAX_HEAD_BYTES,
    MAX_PUBLISH_BYTES,
    PublishRequest,
    Refusal,
    RequestReader,
    response_bytes,
    starts_post,
)
from progressbench.transports.relay.rooms.hub import RoomHub
from progressbench.transports.relay.rooms.meters import RoomMeters
from progressbench.transports.relay.rooms.policy import publish_verdict

from progressbench.core import identity, tokens
from progressbench.core.identity import SERVICE_SUBJECT
from progressbench.kit.meters import Meters

pytestmark = pytest.mark.timeout(10)

SECRET = "s" * 32
SERVICE_SECRET = "v" * 32
JOB = uuid.UUID("6f1c2a9e-5d43-4c1b-9a8e-0b7d3c2e1f00")
PATH = f"/parties/main/{JOB}"


def post(body: bytes = b"{}", *, path: str = PATH, headers: str | None = None) -> bytes:
    head = headers if headers is not None else f"Host: rooms\r\nContent-Length: {len(body)}\r\n"
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body


def service_token(audience: str = "rooms") -> str:
    return identity.issue_service(SERVICE_SECRET, audience)


# -- telling a publish from an upgrade ------------------------------------------------


@pytest.mark.parametrize(("first", "expected"), [(b"POST /x", True), (b"P", True), (b"POS", True)])
def test_any_prefix_of_post_is_a_publish(first: bytes, expected: bool) -> None:
    """However short the first read, a prefix of `POST ` is routed to the HTTP reader."""
    assert starts_post(first) is expected


@pytest.mark.parametrize("first", [b"GET /parties/main/x HTTP/1.1\r\n", b"G", b"PUT /x", b"POSTX"])
def test_anything_else_goes_to_the_websocket_machinery(first: bytes) -> None:
    """GET upgrades (and other methods, which websockets refuses itself) are not read here."""
    assert not starts_post(first)


# -- the reader ---------------------------------------------------------------------------


def test_a_request_split_across_reads_completes_once() -> None:
    """Bytes may arrive one at a time; the request is returned once, when its body is in."""
    reader = RequestReader()
    data = post(b'{"seq": 1}', headers="Content-Length: 10\r\nAuthorization: Bearer t\r\n")
    results = [reader.feed(data[i : i + 1]) for i in range(len(data))]
    assert results[:-1] == [None] * (len(data) - 1)
    headers = {"content-length": "10", "authorization": "Bearer t"}
    assert results[-1] == PublishRequest(PATH, headers, b'{"seq": 1}')
    assert reader.feed(b"more") is None


def test_bytes_after_the_body_are_ignored() -> None:
    """One request per connection: whatever follows the declared body is not part of it."""
    result = RequestReader().feed(post(b"{}") + b"POST / HTTP/1.1\r\n\r\n")
    assert isinstance(result, PublishRequest) and result.body == b"{}"


def test_a_missing_length_means_an_empty_body() -> None:
    """Without Content-Length the body is empty (the hub then answers 400)."""
    result = RequestReader().feed(post(headers="Host: rooms\r\n"))
    assert result == PublishRequest(PATH, {"host": "rooms"}, b"")


def test_a_head_over_its_bound_is_431_before_it_ends() -> None:
    """A head that never ends is refused as soon as it passes the bound, not buffered on."""
    reader = RequestReader()
    assert reader.feed(b"POST / HTTP/1.1\r\nX-Pad: ") is None
    result = reader.feed(b"a" * MAX_HEAD_BYTES)
    assert result == Refusal(431, "request head too large")


def test_a_complete_head_over_its_bound_is_431() -> None:
    """The bound holds also when the whole oversized head arrives in one read."""
    result = RequestReader().feed(post(headers=f"X-Pad: {'a' * MAX_HEAD_BYTES}\r\nContent-Length: 2\r\n"))
    assert result == Refusal(431, "request head too large")


def test_a_body_over_its_bound_is_413_without_waiting_for_it() -> None:
    """The declared length is checked on the head: a huge body is refused before it is sent."""
    result = RequestReader().feed(post(b"", headers=f"Content-Length: {MAX_PUBLISH_BYTES + 1}\r\n"))
    assert result == Refusal(413, "event too large")
    exact = b"x" * MAX_PUBLISH_BYTES
    assert isinstance(RequestReader().feed(post(exact)), PublishRequest)


@pytest.mark.parametrize(
    "length",
    ["abc", "-5", "+5", "5_0", "", " ", "١٢"],
)
def test_a_bad_content_length_is_400(length: str) -> None:
    """Only plain decimal digits count as a length (no sign, underscore or other scripts)."""
    result = RequestReader().feed(post(headers=f"Content-Length: {length}\r\n"))
    assert result == Refusal(400, "bad Content-Length")


def test_conflicting_content_lengths_are_400() -> None:
    """Two different lengths would make the body's end ambiguous."""
    result = RequestReader().feed(post(headers="Content-Length: 2\r\nContent-Length: 3\r\n"))
    assert result == Refusal(400, "bad Content-Length")


def test_a_chunked_body_is_411() -> None:
    """Chunked transfer coding is not read: the publisher must say how long its event is."""
    result = RequestReader().feed(post(headers="Transfer-Encoding: chunked\r\n"))
    assert result == Refusal(411, "a publish needs a Content-Length (no chunked bodies)")


@pytest.mark.parametrize(
    "data",
    [
        b"POST\r\n\r\n",
        b"POST /x\r\n\r\n",
        b"POST  /x HTTP/1.1\r\n\r\n",
        b"POST /x HTTP/2\r\n\r\n",
        b"POST /x HTTP/1.1 extra\r\n\r\n",
    ],
)
def test_a_malformed_request_line_is_400(data: bytes) -> None:
    """The request line must be `POST <target> HTTP/1.x`, single-spaced."""
    assert RequestReader().feed(data) == Refusal(400, "malformed request line")


@pytest.mark.parametrize("line", ["no colon here", ": empty name", "Bad Name: x", " folded: x"])
def test_a_malformed_header_line_is_400(line: str) -> None:
    """Header names are tokens followed by a colon; obsolete line folding is refused."""
    result = RequestReader().feed(post(headers=f"Content-Length: 2\r\n{line}\r\n"))
    assert result == Refusal(400, "malformed header line")


def test_another_method_is_405() -> None:
    """A connection that started like POST but names another method is refused."""
    assert RequestReader().feed(b"POKE /x HTTP/1.1\r\n\r\n") == Refusal(
        405, "a room takes POST (publish) or a WebSocket upgrade"
    )


def test_the_answer_is_json_and_closes_the_connection() -> None:
    """The response carries its length and `connection: close` (one request per connection)."""
    raw = response_bytes(413, {"detail": "event too large"})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head and f"content-length: {len(body)}".encode() in head
    assert json.loads(body) == {"detail": "event too large"}


# -- who may publish ------------------------------------------------------------------------


def test_only_a_service_token_publishes_into_a_room() -> None:
    """Service token for rooms → the room; a phone's token, even with sub service:api → 401.

    A service token made for another service → 403; none → 401; another path → 404.
    """
    assert publish_verdict(SERVICE_SECRET, PATH, f"Bearer {service_token()}") == JOB
    phone = tokens.issue(SECRET, "alice", JOB)
    assert publish_verdict(SERVICE_SECRET, PATH, f"Bearer {phone}") == (401, "not a service token")
    posing = tokens.issue(SECRET, SERVICE_SUBJECT, uuid.UUID(int=0))
    assert publish_verdict(SERVICE_SECRET, PATH, f"Bearer {posing}")[0] == 401  # type: ignore[index]
    assert publish_verdict(SERVICE_SECRET, PATH, None)[0] == 401  # type: ignore[index]
    other = service_token("worker")
    assert publish_verdict(SERVICE_SECRET, PATH, f"Bearer {other}")[0] == 403  # type: ignore[index]
    assert publish_verdict("", PATH, f"Bearer {service_token()}")[0] == 401  # type: ignore[index]
    assert publish_verdict(SERVICE_SECRET, "/parties/other/x", f"Bearer {service_token()}") == (
        404,
        "no such party or room",
    )


# -- the hub's answer ------------------------------------------------------------------------


@pytest.fixture
def hub() -> RoomHub:
    return RoomHub(SECRET, RoomsConfig(), RoomMeters(Meters("rooms", 1)), SERVICE_SECRET)


def publish(hub: RoomHub, body: bytes, token: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"authorization": f"Bearer {token or service_token()}"}
    return hub.publish(PublishRequest(PATH, headers, body))


def test_a_publish_into_an_empty_room_delivers_to_nobody(hub: RoomHub) -> None:
    """No history: with no socket in the room the event reaches no one, and that is a 200."""
    assert publish(hub, b'{"seq": 3, "kind": "step", "owner": "alice"}') == (200, {"delivered": 0})
    assert hub.owners == {}, "an empty room learns no owner"


@pytest.mark.parametrize("body", [b"", b"not json", b'{"kind": "step"}', b'{"seq": "x"}', b"[1]"])
def test_a_body_that_is_not_an_event_with_a_seq_is_400(hub: RoomHub, body: bytes) -> None:
    """The event must be a JSON object with an integer-like seq."""
    status, answer = publish(hub, body)
    assert status == 400 and "seq" in str(answer["detail"])


def test_a_phone_cannot_publish(hub: RoomHub) -> None:
    """The hub applies the publish policy before reading the body."""
    assert publish(hub, b'{"seq": 1}', tokens.issue(SECRET, "alice", JOB)) == (
        401,
        {"detail": "not a service token"},
    )
