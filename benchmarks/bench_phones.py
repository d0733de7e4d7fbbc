"""Many phones in one load process: memory per phone holding an open ``sse`` stream.

Issue #16 asks for >= 10,000 concurrent phones per Locust worker process at
<= 15 KB each. A Locust process hands every session to its asyncio *session
agent* (``progressbench.loadtests.agent``), and the agent is the process that
holds the phones' sockets and watchers; this benchmark runs
that half in this process, through the same code the agent runs
(:func:`progressbench.app.session.run_session` with the ``sse`` watcher):
each phone signs in, creates its job, opens its event stream, receives an
event and heartbeats, and stays connected.

The server is not the real API: one API process cannot hold 10,000 streams
on this 2-core machine (``bench_sse.py`` measures what one costs there). A
small asyncio HTTP/1.1 server in a separate process (``--serve``, in this
file) answers the phone's calls (sign-up, create job, the event stream) and
holds every stream open with a heartbeat comment every ``HEARTBEAT_S``; when
told, it sends each stream its terminal event, so every session ends as the
ledger expects and its receipts can be counted.

Prints this process's RSS before the phones (after a warm-up of a few
phones, so imports and caches are not counted) and with every phone's stream
open, the difference per phone and its ratio to the 15 KB anchor, and, with
``--tracemalloc``, where the Python heap of the phones goes (the top
allocation sites; tracing slows the phones down and costs memory itself, so
the RSS figure is read without it). Then every session must end ``terminal``
with every receipt recorded.

Bounded by ``BUDGET_S``; everything on 127.0.0.1; both processes stopped on
the way out. The soft limit of open files is raised in-process (up to the
hard limit) to hold two sockets per phone (this side and the server's).
Run: ``python benchmarks/bench_phones.py [--phones N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from progressbench.app.bench_figures import record
from progressbench.app.session import SessionSpec, run_session
from progressbench.core.config import JobShape, Timing
from progressbench.core.events import SessionRecord

PHONES = 10_000
#: The issue #16 target, in KB (1,000 bytes): one phone holding an open stream.
ANCHOR_KB = 15.0
BUDGET_S = 180.0
#: Seconds of the budget kept for measuring and ending the sessions: phones still not
#: started by then are not started (the figure is then over the phones that are open).
CLOSING_S = 40.0
WARM_UP = 20
#: Phones started per batch; the next batch starts once this one's streams are open.
BATCH = 250
#: Seconds between the server's heartbeat comments on each stream (the watcher's watchdog
#: waits three of its own 15 s intervals at time scale 1).
HEARTBEAT_S = 5.0
HOST = "127.0.0.1"
#: Frames kept per allocation with ``--tracemalloc`` (enough to reach the project's caller).
TRACE_FRAMES = 16


# ---------------------------------------------------------------- the stream-holding server


class _Holder:
    """Every open event stream, by connection: told to finish, each gets its terminal event."""

    def __init__(self) -> None:
        self.streams: dict[asyncio.Transport, str] = {}
        self.jobs = 0
        self.served = 0
        #: Streams the phones closed before they were finished (a phone gave up or dropped).
        self.lost = 0


def _chunk(text: str) -> bytes:
    data = text.encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(job_id: str, seq: int, kind: str) -> str:
    body = json.dumps({"job_id": job_id, "seq": seq, "kind": kind, "message": kind})
    return f"id: {seq}\nevent: progress\ndata: {body}\n\n"


def _answer(status: str, body: object) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n".encode()
        + data
    )


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, just enough for the phone's calls (no pipelining needed)."""

    def __init__(self, holder: _Holder) -> None:
        self.holder = holder
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None and self.holder.streams.pop(self.transport, None) is not None:
            self.holder.lost += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            method, path, _ = lines[0].split(" ", 2)
            self._route(method, path)

    def _route(self, method: str, path: str) -> None:
        assert self.transport is not None
        holder = self.holder
        holder.served += 1
        if method == "POST" and path.startswith("/auth/v1/"):
            session = {
                "access_token": "bench",
                "refresh_token": "bench",
                "expires_at": time.time() + 3600,
                "user": {"id": "bench"},
            }
            self.transport.write(_answer("200 OK", session))
        elif method == "POST" and path == "/sse/jobs":
            holder.jobs += 1
            job = str(holder.jobs)
            created = {"job_id": job, "token": "bench", "events_href": f"/sse/jobs/{job}/events"}
            self.transport.write(_answer("202 Accepted", created))
        elif method == "GET" and path.startswith("/sse/jobs/") and path.endswith("/events"):
            job = path.split("/")[3]
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\n\r\n" + _chunk(_event(job, 1, "step"))
            )
            holder.streams[self.transport] = job
        elif method == "GET" and path == "/stats":
            self.transport.write(
                _answer("200 OK", {"open": len(holder.streams), "served": holder.served, "lost": holder.lost})
            )
        elif method == "POST" and path == "/finish":
            finished = 0
            for transport, job in list(holder.streams.items()):
                transport.write(_chunk(_event(job, 2, "done")) + b"0\r\n\r\n")
                finished += 1
            holder.streams.clear()
            self.transport.write(_answer("200 OK", {"finished": finished}))
        else:
            self.transport.write(_answer("404 Not Found", {"error": path}))


async def _heartbeats(holder: _Holder) -> None:
    beat = _chunk(": heartbeat\n\n")
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        for transport in list(holder.streams):
            transport.write(beat)


async def serve(budget_s: float) -> None:
    """Listen on a free port, print it, hold streams until stdin closes or the budget is spent."""
    raise_file_limit()
    holder = _Holder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(holder), HOST, 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    beats = asyncio.create_task(_heartbeats(holder))
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stdin_closed, budget_s)
    beats.cancel()
    server.close()
    for transport in list(holder.streams):
        transport.abort()


# ---------------------------------------------------------------- the phones


def raise_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def per_phone_kb(rss_before_kib: int, rss_open_kib: int, phones: int) -> float:
    """RSS growth per phone in KB (1,000 bytes, the unit of the 15 KB anchor)."""
    return (rss_open_kib - rss_before_kib) * 1024 / 1000 / max(phones, 1)


def phone_spec(index: int, api: str) -> SessionSpec:
    """One phone's session, as a cell's plan would hand it to the agent (sse, clean, real time)."""
    return SessionSpec(
        transport="sse",
        profile="clean",
        owner=f"phone-{index}",
        user_index=index,
        job_index=0,
        seed=index,
        shape=JobShape(),
        timing=Timing(time_scale=1.0),
        endpoints={"api": api},
        options={"phone_index": str(index)},
    )


class Control:
    """The bench's own line to the server: its open-stream count, and the order to finish."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def _call(self, method: str, path: str) -> dict[str, int]:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: 0\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            result: dict[str, int] = json.loads(await reader.readexactly(length))
            return result
        finally:
            writer.close()

    async def stats(self) -> dict[str, int]:
        """``open`` streams, requests ``served``, streams ``lost`` (closed by a phone before the end)."""
        return await self._call("GET", "/stats")

    async def open_streams(self) -> int:
        return (await self.stats())["open"]

    async def finish(self) -> int:
        return (await self._call("POST", "/finish"))["finished"]


async def wait_open(control: Control, count: int, deadline: float) -> int:
    """Until the server holds ``count`` streams or the deadline; how many it holds."""
    while True:
        held = await control.open_streams()
        if held >= count or time.monotonic() > deadline:
            return held
        await asyncio.sleep(0.1)


async def finish(
    control: Control, tasks: list[asyncio.Task[SessionRecord]], timeout: float
) -> list[SessionRecord]:
    """Every stream gets its terminal event; the sessions' records (a phone still stuck is cancelled)."""
    await control.finish()
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [t.result() for t in tasks if not t.cancelled() and t.exception() is None]


def _short(frame: tracemalloc.Frame) -> str:
    return f"{frame.filename.split('site-packages/')[-1].rsplit('/lib/python3', 1)[-1]}:{frame.lineno}"


def heaviest(snapshot: tracemalloc.Snapshot) -> list[tuple[tuple[str, str], int]]:
    """Bytes by (the innermost project frame that asked for them, the line that allocated), largest first."""
    sizes: Counter[tuple[str, str]] = Counter()
    for trace in snapshot.traces:
        frames = list(reversed(trace.traceback))  # most recent first
        site = next(
            (f for f in frames if "progressbench" in f.filename or "/transports/" in f.filename), frames[-1]
        )
        sizes[(_short(site), _short(frames[0]))] += trace.size
    return sizes.most_common()


def receipts(records: list[SessionRecord]) -> Counter[str]:
    """Observations recorded over every session, by type (what the ledger will read)."""
    return Counter(o.type for r in records for o in r.observations)


async def bench(port: int, phones: int, trace: bool, deadline: float) -> None:
    api = f"http://{HOST}:{port}"
    control = Control(port)
    # Warm up: a few phones through a whole session, so imports and caches are not counted.
    warm = [asyncio.create_task(run_session(phone_spec(-1 - i, api))) for i in range(WARM_UP)]
    await wait_open(control, WARM_UP, deadline)
    warm_records = await finish(control, warm, 30)
    del warm
    gc.collect()
    await asyncio.sleep(0.5)
    if trace:
        tracemalloc.start(TRACE_FRAMES)
    rss_before = rss_kib()
    started, cpu_started = time.monotonic(), time.process_time()
    tasks: list[asyncio.Task[SessionRecord]] = []
    held = 0
    opening_ends = deadline - CLOSING_S
    while len(tasks) < phones and time.monotonic() < opening_ends:
        batch = min(BATCH, phones - len(tasks))
        tasks += [asyncio.create_task(run_session(phone_spec(len(tasks) + i, api))) for i in range(batch)]
        held = await wait_open(control, len(tasks), opening_ends)
        if len(tasks) % 2000 == 0:
            print(f"  {held} streams open after {time.monotonic() - started:.0f} s", flush=True)
        if held < len(tasks):
            print(f"  out of time to start phones: {held} of {len(tasks)} started are open", flush=True)
            break
    open_s, open_cpu_s = time.monotonic() - started, time.process_time() - cpu_started
    await asyncio.sleep(HEARTBEAT_S + 1)  # every stream has had a heartbeat too
    server_stats = await control.stats()
    held = server_stats["open"]
    gc.collect()
    rss_open = rss_kib()
    snapshot = tracemalloc.take_snapshot() if trace else None
    if trace:
        traced, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    kb = per_phone_kb(rss_before, rss_open, held)
    print(
        f"phones requested {phones}, started {len(tasks)}, streams held open {held} (in {open_s:.1f} s); "
        f"server: {server_stats}"
    )
    print(
        f"phone process CPU to start them: {open_cpu_s:.1f} s "
        f"({open_cpu_s * 1000 / max(len(tasks), 1):.1f} ms per phone)"
    )
    print(
        f"phone process RSS before {rss_before / 1024:.1f} MiB, "
        f"with every stream open {rss_open / 1024:.1f} MiB"
        f"{' (tracemalloc on: RSS includes its own cost)' if trace else ''}"
    )
    print(
        f"memory per phone: {kb:.2f} KB (RSS delta / open streams); "
        f"anchor {ANCHOR_KB:.0f} KB, ratio {kb / ANCHOR_KB:.2f}"
    )
    if snapshot is not None:
        print(f"python heap traced: {traced / max(held, 1) / 1000:.2f} KB per phone; top allocation sites:")
        for (site, line), size in heaviest(snapshot)[:20]:
            print(f"  {size / max(held, 1):8.0f} B/phone  {line}  <- {site}")
    # Printed before the sessions end: the figure stands even if ending them outruns the budget.
    records = await finish(control, tasks, max(10.0, deadline - time.monotonic()))
    terminal = sum(r.outcome == "terminal" for r in records)
    print(f"sessions ended terminal: {terminal} of {len(tasks)} (warm-up: {len(warm_records)} of {WARM_UP})")
    outcomes = Counter(r.outcome for r in records)
    if terminal < len(tasks):
        print(f"outcomes: {dict(outcomes)}; first error: {next((r.error for r in records if r.error), None)}")
    print("receipts recorded: " + ", ".join(f"{k} {v}" for k, v in sorted(receipts(records).items())))
    if not trace:
        record("phones.kb_per_phone", kb, "KB", phones=held, terminal=terminal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=PHONES, help="concurrent phones (default 10,000)")
    parser.add_argument("--tracemalloc", action="store_true", help="also show where the Python heap goes")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(BUDGET_S + 30))
        return
    limit = raise_file_limit()
    print(f"open files soft limit raised to {limit} (two sockets per phone, one on each side)")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        deadline = time.monotonic() + BUDGET_S
        try:
            asyncio.run(asyncio.wait_for(bench(port, args.phones, args.tracemalloc, deadline), BUDGET_S + 10))
        except TimeoutError:
            print(f"stopped: over the {BUDGET_S:.0f} s budget")
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
