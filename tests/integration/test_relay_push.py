"""The queue's pusher on real sockets: kept-alive connections reused, failures named as httpx names them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import h11
import pytest
from progressbench.transports.relay.queue.push import PushAnswer, Pusher, PushError

pytestmark = pytest.mark.timeout(30)


class Target:
    """A push target on 127.0.0.1: answers each request with the next of ``answers`` (raw bytes)."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.connections = 0
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        server = h11.Connection(our_role=h11.SERVER)
        try:
            while self.answers:
                event = server.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if not data:
                        return
                    server.receive_data(data)
                elif isinstance(event, h11.Data):
                    self.bodies.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    writer.write(self.answers.pop(0))
                    await writer.drain()
                    server = h11.Connection(our_role=h11.SERVER)
        finally:
            writer.close()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Target, str]]:
    target = Target([])
    server = await asyncio.start_server(target.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield target, f"http://127.0.0.1:{port}/relay/tasks/run"


async def test_pushes_reuse_a_kept_alive_connection(served: tuple[Target, str]) -> None:
    """Three pushes, one connection; the answers' statuses and Retry-After come back."""
    target, url = served
    target.answers = [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ]
    pusher = Pusher()
    try:
        answers = [await pusher.post(url, b'{"n":%d}' % i, {}, connect_timeout_s=5) for i in range(3)]
    finally:
        await pusher.aclose()
    assert answers == [PushAnswer(204, None), PushAnswer(429, "2"), PushAnswer(200, None)]
    assert target.bodies == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert pusher.opened == 1 and target.connections == 1


async def test_a_closed_connection_is_replaced_and_a_missing_answer_is_an_error(
    served: tuple[Target, str],
) -> None:
    """The target closes after answering: the next push opens a new connection. A target that
    closes without answering fails the push; nobody listening is a ConnectError."""
    target, url = served
    target.answers = [b"HTTP/1.1 202 Accepted\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"] * 2
    pusher = Pusher()
    try:
        assert (await pusher.post(url, b"{}", {}, connect_timeout_s=5)).status == 202
        assert (await pusher.post(url, b"{}", {}, connect_timeout_s=5)).status == 202
        assert pusher.opened == 2
        with pytest.raises(PushError) as no_answer:  # answers used up: the target hangs up
            await pusher.post(url, b"{}", {}, connect_timeout_s=5)
        # an orderly close, or a reset when the request lay unread: httpx names them the same ways
        assert no_answer.value.reason in ("RemoteProtocolError", "ReadError")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        with pytest.raises(PushError) as refused:
            await pusher.post(f"http://127.0.0.1:{closed_port}/", b"{}", {}, connect_timeout_s=5)
        assert refused.value.reason == "ConnectError"
    finally:
        await pusher.aclose()
