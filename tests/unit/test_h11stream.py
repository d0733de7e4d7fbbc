"""The light stream reader's HTTP/1.1, without a socket: requests out, responses in, items out."""

from __future__ import annotations

import asyncio

import pytest
from progressbench.transports.h11stream import (
    END,
    HIGH_WATER,
    Head,
    HttpStream,
    Item,
    ResponseReader,
    StreamError,
    Target,
    target_of,
)

STREAM = Target("http", "127.0.0.1", 8123, "/sse/jobs/j1/events")
OK_CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _sent(headers: dict[str, str]) -> tuple[ResponseReader, bytes]:
    reader = ResponseReader()
    return reader, reader.request(STREAM, headers)


def _feed_bytewise(reader: ResponseReader, wire: bytes) -> list[Item]:
    return [item for i in range(len(wire)) for item in reader.feed(wire[i : i + 1])]


def _body(items: list[Item]) -> bytes:
    return b"".join(item for item in items if isinstance(item, bytes))


@pytest.mark.parametrize(
    ("base", "href", "expected"),
    [
        (
            "http://127.0.0.1:8123",
            "/sse/jobs/a/events",
            Target("http", "127.0.0.1", 8123, "/sse/jobs/a/events"),
        ),
        ("http://127.0.0.1:8123/", "sse/x?after=3", Target("http", "127.0.0.1", 8123, "/sse/x?after=3")),
        ("http://127.0.0.1:9/api/", "/sse/x", Target("http", "127.0.0.1", 9, "/api/sse/x")),
        ("https://example.test", "/e", Target("https", "example.test", 443, "/e")),
        ("http://127.0.0.1:1", "http://127.0.0.1:2/other", Target("http", "127.0.0.1", 2, "/other")),
    ],
)
def test_target_joins_the_href_to_the_base_url_like_httpx_base_url(
    base: str, href: str, expected: Target
) -> None:
    """A relative href goes under the base's path (its prefix kept); an absolute one stands alone."""
    assert target_of(base, href) == expected


@pytest.mark.parametrize("base", ["ftp://127.0.0.1/", "127.0.0.1:8000", "http:///nohost"])
def test_target_refuses_what_is_not_an_http_url(base: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        target_of(base, "/x")


def test_request_is_a_get_with_host_and_exactly_the_given_headers() -> None:
    """Host (port kept when not the default), then the caller's headers; nothing httpx-specific."""
    _, wire = _sent({"authorization": "Bearer t0k", "accept": "text/event-stream", "last-event-id": "7"})
    head, _, rest = wire.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /sse/jobs/j1/events HTTP/1.1"
    assert lines[1:] == [
        b"host: 127.0.0.1:8123",
        b"authorization: Bearer t0k",
        b"accept: text/event-stream",
        b"last-event-id: 7",
    ]
    assert rest == b""
    assert Target("https", "example.test", 443, "/").authority == "example.test"


def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="cannot send"):
        _sent({"authorization": "Bearer a\r\nx-injected: 1"})


def test_chunked_body_comes_out_whatever_the_split_and_ends_at_the_last_chunk() -> None:
    reader, _ = _sent({})
    wire = OK_CHUNKED + b"d\r\n: heartbeat\n\n\r\n5\r\nid: 1\r\n0\r\n\r\n"
    items = _feed_bytewise(reader, wire)
    assert isinstance(items[0], Head) and items[0].status == 200
    assert items[0].get("content-type") == "text/event-stream"
    assert _body(items) == b": heartbeat\n\nid: 1"
    assert items[-1] is END
    assert reader.feed(b"HTTP/1.1 200 OK\r\n") == [], "nothing is read after the end"


def test_content_length_body_ends_at_its_length() -> None:
    reader, _ = _sent({})
    items = reader.feed(b'HTTP/1.1 401 Unauthorized\r\ncontent-length: 17\r\n\r\n{"detail":"nope"}')
    assert items == [Head(401, (("content-length", "17"),)), b'{"detail":"nope"}', END]


def test_a_body_delimited_by_the_close_ends_at_eof() -> None:
    reader, _ = _sent({})
    items = reader.feed(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\ndata: x\n\n") + reader.feed(b"")
    assert _body(items) == b"data: x\n\n" and items[-1] is END


def test_interim_answers_are_skipped() -> None:
    reader, _ = _sent({})
    items = reader.feed(b"HTTP/1.1 100 Continue\r\n\r\n" + OK_CHUNKED)
    assert [type(item) for item in items] == [Head] and items[0] == Head(200, items[0].headers)


@pytest.mark.parametrize(
    "wire",
    [
        OK_CHUNKED + b"5\r\nid: 1\r\n",  # cut between chunks
        OK_CHUNKED + b"5\r\nid",  # cut inside a chunk
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",  # cut before its length
        b"HTTP/1.1 200 OK\r\ncontent-",  # cut inside the head
        b"",  # closed before any answer
    ],
)
def test_an_answer_cut_before_its_end_is_a_protocol_error(wire: bytes) -> None:
    """EOF before the framing's end: the stream broke (httpx's ``RemoteProtocolError``)."""
    reader, _ = _sent({})
    if wire:
        reader.feed(wire)
    with pytest.raises(StreamError) as caught:
        reader.feed(b"")
    assert caught.value.reason == "RemoteProtocolError"


def test_an_answer_that_is_not_http_is_a_protocol_error() -> None:
    reader, _ = _sent({})
    with pytest.raises(StreamError, match="RemoteProtocolError"):
        reader.feed(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


class _FakeTransport(asyncio.Transport):
    """Just what the protocol calls on its transport: a record of reading paused and closed."""

    def __init__(self) -> None:
        self.paused = False
        self.closed = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True


def _stream() -> tuple[HttpStream, _FakeTransport]:
    reader = ResponseReader()
    reader.request(STREAM, {})
    stream = HttpStream(reader)
    transport = _FakeTransport()
    stream.connection_made(transport)
    return stream, transport


def _arrive(stream: HttpStream, data: bytes) -> None:
    """Bytes from the socket, the way the transport hands them over: into the lent buffer."""
    while data:
        buffer = stream.get_buffer(len(data))
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        stream.buffer_updated(n)
        data = data[n:]


async def test_the_body_is_read_as_it_comes_and_ends_with_the_stream() -> None:
    """Bytes arriving wake the one reader; pieces that arrived together come as one."""
    stream, _ = _stream()
    _arrive(stream, OK_CHUNKED + b"3\r\nabc\r\n3\r\ndef\r\n")
    assert await stream.head() == 200 and stream.status == 200
    assert await anext(stream) == b"abcdef"
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not waiting.done(), "nothing unread: the reader waits for the socket"
    _arrive(stream, b"2\r\ngh\r\n0\r\n\r\n")
    assert await waiting == b"gh"
    assert [chunk async for chunk in stream] == []


async def test_a_reset_after_the_data_is_a_read_error_once_the_data_was_taken() -> None:
    stream, _ = _stream()
    _arrive(stream, OK_CHUNKED + b"3\r\nabc\r\n")
    stream.connection_lost(ConnectionResetError())
    await stream.head()
    assert await anext(stream) == b"abc"
    with pytest.raises(StreamError, match="ReadError"):
        await anext(stream)


async def test_eof_mid_body_is_a_protocol_error_and_closes_the_transport() -> None:
    stream, transport = _stream()
    _arrive(stream, OK_CHUNKED + b"3\r\nab")
    stream.eof_received()
    stream.connection_lost(None)
    await stream.head()
    assert await anext(stream) == b"ab", "what arrived of the chunk is read first"
    with pytest.raises(StreamError, match="RemoteProtocolError"):
        await anext(stream)
    assert transport.closed


async def test_a_body_before_any_head_is_a_protocol_error() -> None:
    stream, _ = _stream()
    stream.connection_lost(None)
    with pytest.raises(StreamError, match="RemoteProtocolError"):
        await stream.head()


async def test_a_bounded_read_takes_the_body_up_to_its_limit() -> None:
    stream, _ = _stream()
    _arrive(stream, b"HTTP/1.1 404 Not Found\r\ncontent-length: 10\r\n\r\n0123456789")
    assert await stream.head() == 404
    assert await stream.read(4) == b"0123"


async def test_reading_pauses_while_too_much_is_unread_and_resumes_once_taken() -> None:
    stream, transport = _stream()
    size = HIGH_WATER + 1
    _arrive(stream, OK_CHUNKED + b"%x\r\n" % size + b"x" * size + b"\r\n")
    assert transport.paused
    await stream.head()
    assert len(await anext(stream)) == size
    assert not transport.paused
