"""relay: room fan-out latency at 100 and 1,000 sockets, and the queue's dispatch throughput.

Starts a real stack with only the relay services (embedded Postgres, API,
worker, queue, rooms; no chaos proxy) and measures:

* **fan-out** — publish→receive latency (one host, one wall clock) of
  ``MESSAGES`` publishes (HTTP POST into a room, as the worker does) to
  every socket of the room, for three layouts:

  - 1 room × 100 sockets (PartyKit's cap without hibernation);
  - 10 rooms × 100 sockets = 1,000 sockets (the cap respected, publishes
    to all rooms at once);
  - 1 room × 1,000 sockets (the cap raised, as hibernation would allow).

  The room server is the real ``progressbench.transports.relay.rooms.service``
  process. Its members are read by ``relay_instruments.py readers``: reader
  processes (two by default) that do real handshakes, parse frames with
  ``websockets``' sans-I/O client from one epoll loop, and check every
  message's payload before its latency counts (``--clients lib``: asyncio
  clients in this process instead). The figure is when the reader has the
  message; the kernel's arrival stamp on the socket is printed beside it, so
  the instrument's own queueing is visible.
* **reference** — the 1 room × 1,000 layout again, against a minimal plain
  ``websockets`` server (``relay_instruments.py broadcast``, its own
  process) whose publish is ``websockets.broadcast()`` of the same text to
  every socket, read by the same readers, with the same p99: whether the
  instrument or the room server sets the figure, as a ratio. Without
  compression by default: with websockets' default deflate, ``broadcast()``
  compresses once per socket and cannot keep up with a publish every 50 ms
  at 1,000 sockets here. So its readers inflate nothing, where the room's
  (which compresses a message once for all) inflate every message.
* **queue throughput** — ``TASKS`` tasks created through the queue's
  CreateTask API, pushed to a no-op HTTP sink in this process (answers
  ``204``), with Cloud Tasks' default limits (500 dispatches/s, burst 100,
  1,000 concurrent). All tasks carry one ``schedule_time`` after the last
  create, so the dispatcher drains a full backlog: tasks per second from
  first to last arrival, and scheduleTime→arrival latency.

Nothing is asserted. Bounded by ``BUDGET_S``. Run: ``python benchmarks/bench_relay.py``;
``--part rooms`` (the 1 room × 1,000 layout and its reference only) or ``--part queue`` for a
shorter run; ``--pin`` puts the server on CPU 0 and the readers on CPU 1 while they are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from progressbench.transports.relay.queue.service import QUEUE_CONFIG_ENV
from progressbench.transports.relay.rooms.config import ROOMS_CONFIG_ENV
from relay_instruments import verify  # beside this script (benchmarks/), not part of the package
from websockets.asyncio.client import ClientConnection, connect

from progressbench.app.bench_figures import record
from progressbench.app.supervisor import Stack, StackSettings
from progressbench.core import identity, tokens
from progressbench.core.config import Timing
from progressbench.core.ledger import percentile
from progressbench.kit.database import free_port

TICKS = os.sysconf("SC_CLK_TCK")
BUDGET_S = 110.0
MESSAGES = 20
SPACING_S = 0.05
TASKS = 2000
#: Seconds every task is held (scheduleTime) before it is due.
HOLD_S = 25.0


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far (contention-proof, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    return sum(cpu_split(pid))


def fmt(values: list[float]) -> str:
    parts = []
    for q in (50, 95, 99):
        v = percentile(values, q)
        parts.append(f"p{q} {v:.2f} ms" if v is not None else f"p{q} n/a")
    return ", ".join(parts)


INSTRUMENTS = Path(__file__).with_name("relay_instruments.py")
#: Seconds a reader process may take to open its sockets, and to read once publishing ends.
OPEN_BOUND_S = 90.0
READ_BOUND_S = 20.0
#: Reader processes by default. Two on a 2-core machine: they share a core with the server while
#: it writes, then use both; their tail was 10-20 % lower than one process's in A/B runs here.
READER_PROCS = 2


class Child:
    """An instrument process (``relay_instruments.py``): JSON lines to its stdin, from its stdout.

    Started with :class:`subprocess.Popen` and read through the event loop,
    not with asyncio's subprocess API, whose child watcher reported exit
    codes 255 with a warning when the stack's processes were reaped beside it.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], lines: asyncio.StreamReader, pipe: asyncio.BaseTransport
    ) -> None:
        self.process, self.lines, self.pipe = process, lines, pipe
        self.pid = process.pid

    @classmethod
    async def start(cls, *args: str) -> Child:
        process = subprocess.Popen(
            [sys.executable, str(INSTRUMENTS), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        lines = asyncio.StreamReader(limit=1 << 26)
        loop = asyncio.get_running_loop()
        pipe, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), process.stdout)
        return cls(process, lines, pipe)

    def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line)
        self.process.stdin.flush()

    async def line(self, bound: float) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.lines.readline(), bound)
        if not raw:
            raise RuntimeError(f"{INSTRUMENTS.name} ended (exit {self.process.poll()})")
        answer: dict[str, Any] = json.loads(raw)
        return answer

    async def stop(self) -> None:
        """Close its stdin (a reader stops reading; the broadcast server stops), then reap it."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 10)
        self.pipe.close()


@dataclass
class Reading:
    """What the room's members saw, merged over the readers: latencies of verified messages only."""

    expected: int
    latency_ms: list[float] = field(default_factory=list)
    arrival_ms: list[float] = field(default_factory=list)
    coalesced: int = 0
    bad: int = 0
    reasons: list[str] = field(default_factory=list)
    closed: int = 0
    cpu_s: float | None = None
    cpu_sys_s: float | None = None
    #: CPU milliseconds per publish, of the server and of the readers.
    server_cpu_ms: float | None = None
    reader_cpu_ms: float | None = None

    @property
    def missing(self) -> int:
        return self.expected - len(self.latency_ms) - self.bad

    def p99(self) -> float | None:
        """The p99 of every expected message; None when a wrong or missing one is in the last 1 %."""
        if self.bad:
            return None
        value = percentile(self.latency_ms + [float("inf")] * self.missing, 99)
        return value if value is not None and math.isfinite(value) else None


class ProcessReaders:
    """The room's members in ``procs`` reader processes (``relay_instruments.py readers``).

    Outside this process so that neither their CPU nor this process's
    publisher queues behind the other; see that module for what they check.
    """

    kind = "epoll"

    def __init__(self, procs: int, deflate: bool = True, cpus: set[int] | None = None) -> None:
        self.procs, self.deflate, self.cpus = procs, deflate, cpus
        self.running: list[Child] = []
        self.expected = 0

    async def open(self, host: str, port: int, members: list[tuple[str, str]], messages: int) -> None:
        self.expected = len(members) * messages
        shares = [members[i :: self.procs] for i in range(self.procs)]
        for share in shares:
            child = await Child.start("readers")
            self.running.append(child)
            if self.cpus:
                os.sched_setaffinity(child.pid, self.cpus)
            spec = {"host": host, "port": port, "members": share, "messages": messages}
            spec["deflate"] = self.deflate
            spec["bound_s"] = OPEN_BOUND_S + BUDGET_S
            child.send(json.dumps(spec).encode() + b"\n")
        for child in self.running:
            answer = await child.line(OPEN_BOUND_S)
            if "error" in answer:
                raise RuntimeError(f"readers: {answer['error']} ({answer['opened']} sockets open)")

    async def reading(self) -> Reading:
        merged = Reading(self.expected, cpu_s=0.0)
        for child in self.running:
            try:
                answer = await child.line(READ_BOUND_S)
            except TimeoutError:
                child.send(b"stop\n")  # what it read so far; the rest counts as missing
                answer = await child.line(READ_BOUND_S)
            merged.latency_ms += answer["latency_ms"]
            merged.arrival_ms += answer["arrival_ms"]
            merged.coalesced += answer["coalesced"]
            merged.bad += answer["bad"]
            merged.reasons += answer["reasons"]
            merged.closed += answer["closed"]
            merged.cpu_s = (merged.cpu_s or 0.0) + answer["cpu_s"]
            merged.cpu_sys_s = (merged.cpu_sys_s or 0.0) + answer["cpu_sys_s"]
        return merged

    async def close(self) -> None:
        for child in self.running:
            await child.stop()
        self.running = []


class LibReaders:
    """The room's members as ``websockets``' asyncio clients in this process (a task and a recv() each).

    Checked like the reader processes'; this process's CPU (publisher
    included) is theirs, and no kernel arrival stamp is taken.
    """

    kind = "lib"

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self.listeners: list[asyncio.Task[None]] = []
        self.reading_so_far = Reading(0)
        self.cpu0 = 0.0

    async def open(self, host: str, port: int, members: list[tuple[str, str]], messages: int) -> None:
        got = self.reading_so_far = Reading(len(members) * messages)

        async def join(path: str) -> ClientConnection:
            url = f"ws://{host}:{port}{path}"
            return await connect(url, proxy=None, open_timeout=30, ping_interval=None)

        async def listen(ws: ClientConnection, room: str) -> None:
            for seq in range(1, messages + 1):
                data = await ws.recv(decode=False)
                now = time.time_ns()
                checked = verify(data, room, seq)
                if isinstance(checked, str):
                    got.bad += 1
                    got.reasons = [*got.reasons, checked][:5]
                else:
                    got.latency_ms.append((now - checked) / 1e6)

        for start in range(0, len(members), 100):
            batch = members[start : start + 100]
            opened = await asyncio.gather(*(join(path) for path, _ in batch))
            self.sockets += opened
            self.listeners += [
                asyncio.create_task(listen(ws, room)) for ws, (_, room) in zip(opened, batch, strict=True)
            ]
        self.cpu0 = time.process_time()

    async def reading(self) -> Reading:
        _done, pending = await asyncio.wait(self.listeners, timeout=READ_BOUND_S)
        self.reading_so_far.cpu_s = time.process_time() - self.cpu0
        for task in pending:
            task.cancel()
        return self.reading_so_far

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        self.sockets = []


Readers = ProcessReaders | LibReaders


class RoomTarget:
    """The stack's room server: a publish is the worker's HTTP POST into each room.

    The POST is written by hand on a fresh connection (the room answers, then
    closes, as it does for the worker): an HTTP client library here cost
    several ms of CPU per publish on the cores the readers and the server
    need, and its own work before the request left counted in every latency.
    """

    name = "room server"

    def __init__(self, stack: Stack) -> None:
        self.base = stack.endpoints()["rooms"]
        self.pid = stack.services["rooms"].live()[0].pid
        self.secret = stack.secret
        self.service = identity.issue_service(stack.services["rooms"].config.service_secret, "rooms")

    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.base)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    def path(self, room: uuid.UUID) -> str:
        return f"/parties/main/{room}?token={tokens.issue(self.secret, 'bench', room)}"

    async def __aenter__(self) -> RoomTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def post(self, room: uuid.UUID, seq: int) -> int:
        """One publish; the room's count of sockets it was written to."""
        host, port = self.address()
        event = {"seq": seq, "kind": "step", "message": "m", "payload": {"sent_ns": time.time_ns()}}
        body = json.dumps(event, separators=(",", ":")).encode()
        head = (
            f"POST /parties/main/{room} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {self.service}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(head.encode() + body)
            answer = await asyncio.wait_for(reader.read(), 30)  # the room closes after answering
        finally:
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        status = status_line.split(b" ")[1] if status_line.count(b" ") >= 2 else b"?"
        if status != b"200":
            raise RuntimeError(f"publish answered {status_line.decode(errors='replace')!r}")
        return int(json.loads(rest.partition(b"\r\n\r\n")[2])["delivered"])

    async def publish(self, rooms: list[uuid.UUID], seq: int) -> int | None:
        return sum(await asyncio.gather(*(self.post(r, seq) for r in rooms)))


class BroadcastTarget:
    """The same-run reference: a plain ``websockets`` server (``relay_instruments.py broadcast``).

    A publish is one message on a ``/publish`` socket, which the server hands
    unchanged to ``websockets.broadcast()`` for every other socket: the same
    text the room server sends for that publish.
    """

    name = "websockets.broadcast()"

    def __init__(self, compression: str) -> None:
        self.compression = compression
        self.child: Child | None = None
        self.port = 0
        self.publisher: ClientConnection | None = None

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def path(self, room: uuid.UUID) -> str:
        return f"/parties/main/{room}"

    async def __aenter__(self) -> BroadcastTarget:
        self.child = await Child.start("broadcast", f"--compression={self.compression}")
        self.port = int((await self.child.line(30))["port"])
        url = f"ws://127.0.0.1:{self.port}/publish"
        self.publisher = await connect(url, proxy=None, ping_interval=None, compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.publisher is not None:
            await self.publisher.close()
        if self.child is not None:
            await self.child.stop()

    async def publish(self, rooms: list[uuid.UUID], seq: int) -> int | None:
        assert self.publisher is not None
        for room in rooms:
            event = {"seq": seq, "kind": "step", "message": "m", "payload": {"sent_ns": time.time_ns()}}
            text = json.dumps({"type": "event", **event, "job_id": str(room)}, separators=(",", ":"))
            await self.publisher.send(text)
        return None


Target = RoomTarget | BroadcastTarget


async def fan_out(
    target: Target, readers: Readers, rooms: int, per_room: int, server_cpus: set[int] | None = None
) -> Reading:
    """``MESSAGES`` publishes into each of ``rooms`` rooms of ``per_room`` sockets, read by ``readers``.

    ``server_cpus``: the server process runs only there while it is measured (``--pin``).
    """
    ids = [uuid.uuid4() for _ in range(rooms)]
    host, port = target.address()
    paths = {room: target.path(room) for room in ids}  # one token per room, shared by its sockets
    members = [(paths[room], str(room)) for room in ids for _ in range(per_room)]
    print(f"{target.name} (pid {target.pid}): opening {len(members)} {readers.kind} sockets", flush=True)
    every_cpu = os.sched_getaffinity(target.pid)
    if server_cpus:
        os.sched_setaffinity(target.pid, server_cpus)
    t0 = time.monotonic()
    try:
        await readers.open(host, port, members, MESSAGES)
        open_s = time.monotonic() - t0
        (user0, sys0), own0 = cpu_split(target.pid), time.process_time()
        delivered: int | None = 0
        for seq in range(1, MESSAGES + 1):
            count = await target.publish(ids, seq)
            delivered = None if count is None or delivered is None else delivered + count
            await asyncio.sleep(SPACING_S)
        got = await readers.reading()
        (user1, sys1), own_cpu = cpu_split(target.pid), time.process_time() - own0
        server_sys = sys1 - sys0
        server_cpu = user1 - user0 + server_sys
    finally:
        await readers.close()
        if server_cpus:
            os.sched_setaffinity(target.pid, every_cpu)
    publishes = MESSAGES * rooms
    print(
        f"fan-out, {target.name}: {rooms} room(s) × {per_room} {readers.kind} sockets = {rooms * per_room}, "
        f"opened in {open_s:.1f} s; {MESSAGES} publishes per room; "
        f"delivered {'n/a' if delivered is None else delivered}, verified {len(got.latency_ms)} "
        f"of {got.expected}"
        + (f", {got.bad} WRONG ({'; '.join(got.reasons)})" if got.bad else "")
        + (f", {got.missing} missing ({got.closed} sockets closed)" if got.missing else "")
    )
    print(f"  publish→receive latency (the reader has it): {fmt(got.latency_ms)}")
    if got.arrival_ms:
        print(
            f"  publish→arrival on the socket (kernel stamp): {fmt(got.arrival_ms)}"
            + (f" ({got.coalesced} read behind another: stamped when read)" if got.coalesced else "")
        )
    print(
        f"  CPU per publish: server {server_cpu * 1000 / publishes:.2f} ms "
        f"(in the kernel {server_sys * 1000 / publishes:.2f}), "
        f"readers {(got.cpu_s or 0.0) * 1000 / publishes:.2f} ms"
        + ("" if got.cpu_sys_s is None else f" (in the kernel {got.cpu_sys_s * 1000 / publishes:.2f})")
        + ", "
        f"this process (publisher{' + sockets' if readers.kind == 'lib' else ''}) "
        f"{own_cpu * 1000 / publishes:.2f} ms"
    )
    got.server_cpu_ms = server_cpu * 1000 / publishes
    got.reader_cpu_ms = (got.cpu_s or 0.0) * 1000 / publishes
    return got


class Sink:
    """A no-op push target: answers 204 to every request, keeps connections alive."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.headers_ok = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                body = await reader.readexactly(int(fields.get("content-length", "0")))
                self.arrivals.append((time.time(), json.loads(body).get("created", "0")))
                if "x-cloudtasks-taskname" in fields and fields.get("authorization", "").startswith(
                    "Bearer "
                ):
                    self.headers_ok += 1
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


async def queue_throughput(stack: Stack, sink_port: int, hold_s: float) -> None:
    sink = Sink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", sink_port)
    url = f"http://127.0.0.1:{sink_port}/push"
    queue = stack.endpoints()["queue"]
    service = identity.issue_service(stack.services["queue"].config.service_secret, "queue")
    limit = asyncio.Semaphore(50)
    async with httpx.AsyncClient(
        headers={"authorization": f"Bearer {service}"}, timeout=30, limits=httpx.Limits(max_connections=50)
    ) as http:

        async def create(i: int) -> None:
            async with limit:
                body = {"created": str(release)}
                task = {
                    "name": f"bench-{uuid.uuid4().hex}",
                    "url": url,
                    "body": body,
                    "schedule_time": datetime.fromtimestamp(release, UTC).isoformat(),
                }
                response = await http.post(f"{queue}/v2/tasks", json=task)
                response.raise_for_status()

        # Every task is scheduled for one instant after all are created, so the queue
        # drains a full backlog: the dispatch rate is measured apart from the create rate.
        queue_pid = stack.services["queue"].live()[0].pid
        t0 = time.time()
        release = t0 + hold_s
        await asyncio.gather(*(create(i) for i in range(TASKS)))
        created_s = time.time() - t0
        full = time.time() < release
        if not full:
            print(f"  (creating took longer than the {hold_s:.0f} s hold: the backlog was not full)")
        await asyncio.sleep(max(release - time.time() - 1.0, 0.0))
        cpu0 = cpu_s(queue_pid)
        deadline = time.monotonic() + 40
        while len(sink.arrivals) < TASKS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    queue_cpu = cpu_s(queue_pid) - cpu0
    server.close()
    for writer in list(sink.writers):
        writer.close()  # the queue's keep-alive connections: end them so the handlers return
    await server.wait_closed()
    times = sorted(t for t, _ in sink.arrivals)
    lat = [(t - float(c)) * 1000 for t, c in sink.arrivals]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    rate = (len(times) - 1) / span if span > 0 else float("nan")
    print(
        f"queue: {TASKS} tasks created in {created_s:.2f} s ({TASKS / created_s:.0f}/s over HTTP); "
        f"{len(times)} pushed; dispatch rate {rate:.0f} tasks/s (first→last arrival, limit 500/s burst 100); "
        f"pushes with OIDC + X-CloudTasks headers: {sink.headers_ok}"
    )
    print(f"  scheduleTime→push latency: {fmt(lat)}")
    if full:
        print(f"  queue process CPU while draining: {queue_cpu * 1000 / max(len(times), 1):.2f} ms per task")
    record("relay.queue_tasks_per_s", rate, "tasks/s", pushed=len(times))


def figure_context(got: Reading, readers: Readers) -> dict[str, object]:
    return {
        "received": len(got.latency_ms),
        "expected": got.expected,
        "wrong": got.bad,
        "clients": readers.kind,
        "arrival_p99_ms": percentile(got.arrival_ms, 99),
        "server_cpu_ms_per_publish": got.server_cpu_ms,
        "reader_cpu_ms_per_publish": got.reader_cpu_ms,
    }


async def rooms_part(
    stack: Stack, part: str, make_readers: Callable[[], Readers], compression: str, pin: bool
) -> None:
    server_cpus = {0} if pin else None
    async with RoomTarget(stack) as room:
        if part == "all":
            await fan_out(room, make_readers(), 1, 100, server_cpus)
            await fan_out(room, make_readers(), 10, 100, server_cpus)
        readers = make_readers()
        got = await fan_out(room, readers, 1, 1000, server_cpus)
    p99 = got.p99()
    record("relay.room_p99_ms_1000", p99, "ms", **figure_context(got, readers))
    # The same layout, payload, readers and p99 against a plain websockets server: whether the
    # instrument or the room server sets the figure.
    async with BroadcastTarget(compression) as reference:
        readers = make_readers()
        ref = await fan_out(reference, readers, 1, 1000, server_cpus)
    ref_p99 = ref.p99()
    record(
        "relay.broadcast_p99_ms_1000", ref_p99, "ms", compression=compression, **figure_context(ref, readers)
    )
    ratio = p99 / ref_p99 if p99 is not None and ref_p99 else None
    shown = "n/a" if ratio is None else f"{ratio:.2f}"
    print(f"room p99 / websockets.broadcast() p99 at 1,000 sockets: {shown} (anchor: <= 1)")
    record("relay.room_p99_ratio_to_broadcast", ratio, "x", room_p99_ms=p99, broadcast_p99_ms=ref_p99)


async def bench(
    stack: Stack,
    sink_port: int,
    part: str,
    hold_s: float,
    make_readers: Callable[[], Readers],
    compression: str,
    pin: bool,
) -> None:
    if part in ("all", "rooms"):
        await rooms_part(stack, part, make_readers, compression, pin)
    if part in ("all", "queue"):
        await queue_throughput(stack, sink_port, hold_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("all", "rooms", "queue"),
        default="all",
        help="all layouts and the queue (default), only 1 room × 1,000 sockets, or only the queue",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=HOLD_S,
        help=f"seconds the queue's tasks are held before all fall due (default {HOLD_S:g}; longer on a "
        "loaded machine, so that creating them ends first and the queue drains a full backlog)",
    )
    parser.add_argument(
        "--clients",
        choices=("epoll", "lib"),
        default="epoll",
        help="room members read by websockets' sans-I/O client from an epoll loop in reader processes "
        "of their own (default), or websockets' asyncio clients in this process (a task and a recv() "
        "per socket: their CPU, not the server's, sets the tail)",
    )
    parser.add_argument(
        "--readers",
        type=int,
        default=READER_PROCS,
        help=f"reader processes the sockets are dealt among, with --clients epoll (default {READER_PROCS})",
    )
    parser.add_argument(
        "--reader-compression",
        choices=("deflate", "none"),
        default="deflate",
        help="whether the reader processes offer permessage-deflate, as websockets' connect() and "
        "browsers do (default), or nothing",
    )
    parser.add_argument(
        "--broadcast-compression",
        choices=("deflate", "none"),
        default="none",
        help="the reference websockets server's compression: none (default: broadcast() at its "
        "cheapest), or websockets' default permessage-deflate, which broadcast() compresses once "
        "per socket (here more CPU per publish than the 50 ms between publishes: its queue grows)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on CPU 0, the reader processes on CPU 1, while each layout is measured",
    )
    args = parser.parse_args()
    part, hold_s = args.part, args.hold
    procs = max(1, args.readers)

    def make_readers() -> Readers:
        if args.clients == "lib":
            return LibReaders()
        cpus = {1} if args.pin and (os.cpu_count() or 1) > 1 else None
        return ProcessReaders(procs, deflate=args.reader_compression == "deflate", cpus=cpus)

    os.environ[ROOMS_CONFIG_ENV] = json.dumps({"max_connections_per_room": 1000})
    # The queue pushes only to allowlisted targets: the sink's port is chosen before the stack starts.
    sink_port = free_port()
    os.environ[QUEUE_CONFIG_ENV] = json.dumps({"push_targets": [f"http://127.0.0.1:{sink_port}"]})
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(
            run_dir=Path(tmp), timing=Timing(time_scale=1.0), transports=("relay",), chaos=False
        )
        with Stack(settings) as stack:
            asyncio.run(
                asyncio.wait_for(
                    bench(stack, sink_port, part, hold_s, make_readers, args.broadcast_compression, args.pin),
                    BUDGET_S + hold_s - HOLD_S,
                )
            )


if __name__ == "__main__":
    main()
