"""The ``sse`` phone on its light stream (h11 over a plain socket) against a scripted HTTP server.

A real socket on 127.0.0.1, no stack: each event-stream GET gets the next
answer of a script (chunked or ``Content-Length``, cut, refused, silent), so
the watcher's rules are checked one by one: the headers it sends, its drop
reasons, ``retry:``, ``Last-Event-ID`` on every reconnect, a refusal no retry
fixes, and that it holds nothing but its stream's socket while it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from progressbench.transports.sse.client import ResumableSseWatcher
from progressbench.transports.types import ClientSettings, JobRequest

from progressbench.core.config import JobShape, Timing
from progressbench.core.errors import TransportError
from progressbench.core.events import (
    Alive,
    ClientEvent,
    Connected,
    Disconnected,
    Progress,
    Reconnected,
    Resumed,
    Submitted,
)
from tests.helpers import UNIT, wait_until

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]
CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _chunk(text: str) -> bytes:
    return b"%x\r\n%s\r\n" % (len(text), text.encode())


def _event(seq: int, kind: str = "step") -> str:
    body = json.dumps({"job_id": "j1", "seq": seq, "kind": kind, "message": f"m{seq}"})
    return f"id: {seq}\nevent: progress\ndata: {body}\n\n"


def _json(status: str, body: object) -> bytes:
    data = json.dumps(body).encode()
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(data)}\r\n\r\n".encode() + data


@dataclass
class ScriptedApi:
    """Sign-in and job creation always succeed; each event-stream GET takes the next answer."""

    answers: list[Answer]
    events_href: str = "/sse/jobs/j1/events"
    gets: list[dict[str, str]] = field(default_factory=list)
    open_connections: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                if path.startswith("/auth/v1/"):
                    session = {
                        "access_token": "access",
                        "refresh_token": "refresh",
                        "expires_at": time.time() + 3600,
                        "user": {"id": "u1"},
                    }
                    writer.write(_json("200 OK", session))
                elif method == "POST" and path == "/sse/jobs":
                    created = {"job_id": "j1", "token": "tok", "events_href": self.events_href}
                    writer.write(_json("202 Accepted", created))
                elif method == "GET" and path == "/sse/jobs/j1/events":
                    self.gets.append(headers)
                    await self.answers.pop(0)(writer)
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open_connections -= 1
            writer.close()


@contextlib.asynccontextmanager
async def scripted(answers: list[Answer], **api_fields: str) -> AsyncIterator[tuple[ScriptedApi, str]]:
    api = ScriptedApi(answers, **api_fields)
    server = await asyncio.start_server(api.handle, "127.0.0.1", 0)
    try:
        yield api, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        api.release.set()
        server.close()


def watcher(url: str, **options: str) -> ResumableSseWatcher:
    timing = Timing(time_scale=0.05)
    return ResumableSseWatcher(ClientSettings(endpoints={"api": url}, timing=timing, options=options))


REQUEST = JobRequest(owner="light-phone", shape=JobShape(), seed=1, time_scale=0.05)


async def _collect(
    events: AsyncIterator[ClientEvent], until: Callable[[ClientEvent], bool]
) -> list[ClientEvent]:
    seen: list[ClientEvent] = []
    async with asyncio.timeout(20 * UNIT):
        async for event in events:
            seen.append(event)
            if until(event):
                break
    await events.aclose()  # type: ignore[attr-defined]
    return seen


def _is_done(event: ClientEvent) -> bool:
    return isinstance(event, Progress) and event.kind == "done"


async def test_resumes_across_cuts_refusals_and_both_body_framings() -> None:
    """A cut chunked stream, a 503, a ``Content-Length`` body that ends, then the rest: every
    event once, one ``Disconnected`` per outage, ``Last-Event-ID`` = the highest seq seen."""

    async def cut_mid_chunk(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED + _chunk("retry: 20\n\n" + _event(1)) + _chunk(": hb\n\n") + b"40\r\nid: 2")
        await writer.drain()

    async def unavailable(writer: asyncio.StreamWriter) -> None:
        writer.write(_json("503 Service Unavailable", {"detail": "busy"}))
        await writer.drain()

    async def whole_body(writer: asyncio.StreamWriter) -> None:
        body = _event(2).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        writer.write(body)
        await writer.drain()

    async def finish(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED + _chunk(_event(3)) + _chunk(_event(4, "done")) + b"0\r\n\r\n")
        await writer.drain()

    async with scripted([cut_mid_chunk, unavailable, whole_body, finish]) as (api, url):
        seen = await _collect(watcher(url).session(REQUEST), _is_done)
    assert seen == [
        Submitted(job_id="j1", token="tok"),
        Connected(),
        Progress(job_id="j1", seq=1, kind="step", message="m1"),
        Alive(),
        Disconnected(reason="RemoteProtocolError"),
        Reconnected(attempt=2),
        Resumed(from_seq=1),
        Progress(job_id="j1", seq=2, kind="step", message="m2"),
        Disconnected(reason="stream closed"),
        Reconnected(attempt=1),
        Resumed(from_seq=2),
        Progress(job_id="j1", seq=3, kind="step", message="m3"),
        Progress(job_id="j1", seq=4, kind="done", message="m4"),
    ]
    assert [get.get("last-event-id") for get in api.gets] == [None, "1", "1", "2"]
    for get in api.gets:
        assert get["authorization"] == "Bearer tok" and get["accept"] == "text/event-stream"
        assert get["host"] == url.removeprefix("http://")


async def test_while_it_listens_the_phone_holds_only_its_streams_socket() -> None:
    """The job is created on a client closed at once: one connection stays, the stream's, and
    no httpx client is left open (its pool and wrappers cost ~36 KB per phone)."""
    api_ref: list[ScriptedApi] = []

    async def hold(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED + _chunk(_event(1)))
        await writer.drain()
        await api_ref[0].release.wait()
        writer.write(_chunk(_event(2, "done")) + b"0\r\n\r\n")
        await writer.drain()

    async with scripted([hold]) as (api, url):
        api_ref.append(api)
        events = watcher(url).session(REQUEST)
        watch = asyncio.ensure_future(_collect(events, _is_done))
        await wait_until(lambda: len(api.gets) == 1, 10, "the stream's GET")
        await wait_until(lambda: api.open_connections == 1, 10, "the sign-up/POST connection closed")
        gc.collect()
        clients = [o for o in gc.get_objects() if isinstance(o, httpx.AsyncClient) and not o.is_closed]
        assert clients == [], "no httpx client (pool, connections) kept while the phone only listens"
        api.release.set()
        seen = await watch
    assert _is_done(seen[-1])


async def test_a_refusal_no_retry_fixes_ends_the_watch_with_the_body() -> None:
    async def unauthorized(writer: asyncio.StreamWriter) -> None:
        writer.write(_json("401 Unauthorized", {"detail": "token expired or not for this job"}))
        await writer.drain()

    async with scripted([unauthorized]) as (_, url):
        with pytest.raises(TransportError, match=r"event stream answered 401: .*not for this job"):
            await _collect(watcher(url).session(REQUEST), _is_done)


async def test_a_silent_stream_is_dropped_by_the_idle_watchdog_and_resumed() -> None:
    async def silent(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED + _chunk(_event(1)))
        await writer.drain()
        await asyncio.sleep(30 * UNIT)  # the phone must give up first: the test ends it by then

    async def finish(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED + _chunk(_event(2, "done")) + b"0\r\n\r\n")
        await writer.drain()

    async with scripted([silent, finish]) as (api, url):
        # idle after 1 heartbeat of 2 s, at time scale 0.05: 0.1 s of silence
        seen = await _collect(watcher(url, heartbeat_s="2", idle_heartbeats="1").session(REQUEST), _is_done)
    assert Disconnected(reason="idle watchdog") in seen and _is_done(seen[-1])
    assert api.gets[-1]["last-event-id"] == "1"


async def test_a_stream_that_cannot_connect_is_a_connect_error() -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    async with scripted([], events_href=f"http://127.0.0.1:{port}/sse/jobs/j1/events") as (_, url):
        seen = await _collect(watcher(url).session(REQUEST), lambda e: isinstance(e, Disconnected))
    assert seen[-1] == Disconnected(reason="ConnectError")
    assert Connected() not in seen
