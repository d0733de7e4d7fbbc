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

  Sockets are ``websockets`` clients in this process; the room server is
  the real ``progressbench.transports.relay.rooms.service`` process.
* **queue throughput** — ``TASKS`` tasks created through the queue's
  CreateTask API, pushed to a no-op HTTP sink in this process (answers
  ``204``), with Cloud Tasks' default limits (500 dispatches/s, burst 100,
  1,000 concurrent). All tasks carry one ``schedule_time`` after the last
  create, so the dispatcher drains a full backlog: tasks per second from
  first to last arrival, and scheduleTime→arrival latency.

Nothing is asserted. Bounded by ``BUDGET_S``. Run: ``python benchmarks/bench_relay.py``;
``--part rooms`` (the 1 room × 1,000 layout only) or ``--part queue`` for a shorter run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from progressbench.transports.relay.queue.service import QUEUE_CONFIG_ENV
from progressbench.transports.relay.rooms.config import ROOMS_CONFIG_ENV
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

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


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (contention-proof, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def fmt(values: list[float]) -> str:
    parts = []
    for q in (50, 95, 99):
        v = percentile(values, q)
        parts.append(f"p{q} {v:.2f} ms" if v is not None else f"p{q} n/a")
    return ", ".join(parts)


class LeanMember(asyncio.Protocol):
    """A room member read by websockets' sans-I/O client on a bare asyncio protocol.

    The library's own handshake, framing and permessage-deflate (offered as
    its ``connect()`` offers it), without the asyncio connection's task,
    message queue and ``recv()`` wake-up per socket and message: 1,000
    library clients in this one process cost more CPU per publish than the
    room server itself, so their queueing, not the room's, set the tail.
    """

    def __init__(self, url: str, on_text: Callable[[bytes | str], None], expected: int) -> None:
        self.ws = ClientProtocol(parse_uri(url), extensions=enable_client_permessage_deflate(None))
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.on_text, self.left = on_text, expected
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response) and not self.opened.done():
                failed = self.ws.handshake_exc
                self.opened.set_exception(failed) if failed else self.opened.set_result(None)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.on_text(event.data)
                self.left -= 1
                if self.left == 0 and not self.done.done():
                    self.done.set_result(None)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for waiter in (self.opened, self.done):
            if not waiter.done():
                waiter.set_exception(ConnectionError("room socket closed"))

    def _flush(self) -> None:
        assert self.transport is not None
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def fan_out(stack: Stack, rooms: int, per_room: int, clients: str = "lean") -> None:
    base = stack.endpoints()["rooms"]
    ws_base = base.replace("http://", "ws://")
    ids = [uuid.uuid4() for _ in range(rooms)]
    latencies: list[float] = []
    received = 0
    sockets: list[ClientConnection] = []

    async def join(room: uuid.UUID) -> ClientConnection:
        token = tokens.issue(stack.secret, "bench", room)
        return await connect(
            f"{ws_base}/parties/main/{room}?token={token}", proxy=None, open_timeout=30, ping_interval=None
        )

    def on_text(data: bytes | str) -> None:
        nonlocal received
        message = json.loads(data)
        latencies.append((time.time_ns() - int(message["payload"]["sent_ns"])) / 1e6)
        received += 1

    lean: list[LeanMember] = []

    async def join_lean(room: uuid.UUID) -> LeanMember:
        token = tokens.issue(stack.secret, "bench", room)
        member = LeanMember(f"{ws_base}/parties/main/{room}?token={token}", on_text, MESSAGES)
        parts = urlsplit(ws_base)
        await asyncio.get_running_loop().create_connection(lambda: member, parts.hostname, parts.port)
        await asyncio.wait_for(member.opened, 30)
        return member

    t0 = time.monotonic()
    for room in ids:
        for start in range(0, per_room, 100):
            count = min(100, per_room - start)
            if clients == "lean":
                lean.extend(await asyncio.gather(*(join_lean(room) for _ in range(count))))
            else:
                sockets.extend(await asyncio.gather(*(join(room) for _ in range(count))))
    open_s = time.monotonic() - t0

    async def listen(ws: ClientConnection) -> None:
        for _ in range(MESSAGES):
            on_text(await ws.recv())

    listeners: list[asyncio.Future[None]] = [asyncio.create_task(listen(ws)) for ws in sockets]
    listeners += [member.done for member in lean]
    rooms_pid = stack.services["rooms"].live()[0].pid
    cpu0, own0 = cpu_s(rooms_pid), time.process_time()
    service = identity.issue_service(stack.services["rooms"].config.service_secret, "rooms")
    delivered = 0
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {service}"}, timeout=30) as http:
        for seq in range(1, MESSAGES + 1):

            async def publish(room: uuid.UUID, seq: int = seq) -> int:
                body = {"seq": seq, "kind": "step", "message": "m", "payload": {"sent_ns": time.time_ns()}}
                response = await http.post(f"{base}/parties/main/{room}", json=body)
                return int(response.json()["delivered"])

            delivered += sum(await asyncio.gather(*(publish(r) for r in ids)))
            await asyncio.sleep(SPACING_S)
    _done, pending = await asyncio.wait(listeners, timeout=20)
    rooms_cpu, own_cpu = cpu_s(rooms_pid) - cpu0, time.process_time() - own0
    for task in pending:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    for member in lean:
        member.close()
    print(
        f"fan-out {rooms} room(s) × {per_room} {clients} sockets = {rooms * per_room}: "
        f"opened in {open_s:.1f} s; "
        f"{MESSAGES} publishes per room; delivered {delivered}, received {received}"
    )
    print(f"  publish→receive latency: {fmt(latencies)}")
    publishes = MESSAGES * rooms
    print(
        f"  CPU per publish: rooms process {rooms_cpu * 1000 / publishes:.2f} ms, "
        f"this process (publisher + sockets) {own_cpu * 1000 / publishes:.2f} ms"
    )
    if rooms == 1:
        record(
            f"relay.room_p99_ms_{per_room}",
            percentile(latencies, 99),
            "ms",
            received=received,
            clients=clients,
        )


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


async def bench(stack: Stack, sink_port: int, part: str, hold_s: float, clients: str) -> None:
    if part == "all":
        await fan_out(stack, 1, 100, clients)
        await fan_out(stack, 10, 100, clients)
    if part in ("all", "rooms"):
        await fan_out(stack, 1, 1000, clients)
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
        choices=("lean", "lib"),
        default="lean",
        help="room members read by websockets' sans-I/O client on bare asyncio protocols (default), or "
        "websockets' asyncio clients (a task and a recv() per socket: this process's CPU sets the tail)",
    )
    args = parser.parse_args()
    part, hold_s, clients = args.part, args.hold, args.clients
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
                asyncio.wait_for(bench(stack, sink_port, part, hold_s, clients), BUDGET_S + hold_s - HOLD_S)
            )


if __name__ == "__main__":
    main()
