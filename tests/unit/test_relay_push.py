"""The queue's push, sans-I/O: the request's bytes, and the answer read from any response shape."""

from __future__ import annotations

import h11
import pytest
from progressbench.transports.relay.queue.push import Exchange, PushAnswer, PushError, origin_of

ORIGIN = origin_of("http://127.0.0.1:8080/relay/tasks/run?x=1")


def exchange_with_request(body: bytes = b'{"job_id":"j"}') -> tuple[Exchange, bytes]:
    exchange = Exchange(h11.Connection(our_role=h11.CLIENT))
    return exchange, exchange.request(ORIGIN, {"Authorization": "Bearer t"}, body)


def test_the_request_is_a_post_with_its_length_host_and_headers() -> None:
    """What the worker reads: the target with its query, Host with the port, a JSON body."""
    _exchange, sent = exchange_with_request()
    server = h11.Connection(our_role=h11.SERVER)
    server.receive_data(sent)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert request.method == b"POST" and request.target == b"/relay/tasks/run?x=1"
    fields = dict(request.headers)
    assert fields[b"host"] == b"127.0.0.1:8080" and fields[b"content-length"] == b"14"
    assert fields[b"authorization"] == b"Bearer t"
    data = server.next_event()
    assert isinstance(data, h11.Data) and data.data == b'{"job_id":"j"}'
    assert isinstance(server.next_event(), h11.EndOfMessage)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n",
    ],
    ids=["length", "chunked"],
)
def test_the_answer_comes_whole_however_the_response_is_split(response: bytes) -> None:
    """Status and Retry-After once the body has ended (read and dropped), byte by byte or at once."""
    for step in (1, len(response)):
        exchange, _ = exchange_with_request()
        answers = [exchange.feed(response[i : i + step]) for i in range(0, len(response), step)]
        assert answers[-1] == PushAnswer(503, "7") and all(a is None for a in answers[:-1])
        assert exchange.reusable(), "a keep-alive answer leaves the connection for the next push"


def test_a_connection_the_server_closes_is_not_reused() -> None:
    """``Connection: close`` (or a body delimited by the close) ends the connection's use."""
    exchange, _ = exchange_with_request()
    answer = exchange.feed(b"HTTP/1.1 202 Accepted\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
    assert answer == PushAnswer(202, None)
    assert not exchange.reusable()
    exchange, _ = exchange_with_request()
    assert exchange.feed(b"HTTP/1.1 200 OK\r\n\r\nbody until the close") is None
    assert exchange.feed(b"") == PushAnswer(200, None)
    assert not exchange.reusable()


@pytest.mark.parametrize(
    "response",
    [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", b"not http at all\r\n\r\n"],
    ids=["nothing", "cut-body", "garbage"],
)
def test_no_answer_or_a_broken_one_is_a_remote_protocol_error(response: bytes) -> None:
    """Closed before the answer ended, or not HTTP: the attempt failed (httpx's name for it)."""
    exchange, _ = exchange_with_request()
    with pytest.raises(PushError) as failed:
        exchange.feed(response)
        exchange.feed(b"")
    assert failed.value.reason == "RemoteProtocolError"


def test_only_http_urls_are_pushed_to() -> None:
    """The origin keeps default ports out of Host; another scheme is refused."""
    assert origin_of("http://worker/run").authority == "worker"
    assert origin_of("https://w.example:8443").target == "/"
    with pytest.raises(ValueError, match="not an http"):
        origin_of("ftp://worker/run")
