"""bench_relay.py's instruments, each run as its own process: room readers, and a plain broadcast server.

``python benchmarks/relay_instruments.py readers`` — WebSocket members of
rooms, read without asyncio. One JSON line on stdin describes them (host,
port, ``[path, room]`` per socket, messages per socket, a time bound). Each
socket does a real opening handshake and parses frames with ``websockets``'
sans-I/O :class:`~websockets.client.ClientProtocol` (permessage-deflate
offered as its ``connect()`` offers it); the sockets are read from one
``epoll`` loop. Every text message is checked (:func:`verify`: JSON, an
``event`` of this socket's room, the next ``seq``, a ``sent_ns`` stamp; or
byte-equal to a copy of that event already checked on another socket)
before its latency counts. The process answers one JSON line when every
socket is open, and one with the readings when every socket has its
messages, when stdin says ``stop`` or closes, or at the time bound.

Why a process of its own, without asyncio: at 1,000 sockets the readers
are the costliest part of the measurement (an asyncio protocol per socket
cost ~68 ms of CPU per publish, more than the room server), and in the
benchmark's process they also competed with its publisher. Two stamps are
taken per message: when this reader has it (``time.time_ns()`` right after
``recvmsg``: the figure), and, on Linux, when the kernel queued it on the
socket (``SO_TIMESTAMPNS``): the difference is this instrument's own
queueing, so a reading says whether the server or the instrument set it.

``python benchmarks/relay_instruments.py broadcast [--compression deflate|none]``
— the same-run reference: a minimal plain ``websockets`` server on
127.0.0.1 (its port in the first stdout line). Every socket is a subscriber,
except ``/publish``, whose messages go to all subscribers through
``websockets.broadcast()`` unchanged. It stops when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

#: Linux's SO_TIMESTAMPNS (== SCM_TIMESTAMPNS) on x86-64 and arm64; Python's socket module lacks it.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@ll")
ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size)
#: Sockets whose handshakes are in flight at once (a listen backlog is often 100).
OPEN_BATCH = 100
READ_SIZE = 65536


def verify(data: bytes, room: str, seq: int) -> int | str:
    """A message's ``sent_ns`` when it is the event ``seq`` of ``room``, else why it is not.

    The bytes must decode (UTF-8, JSON) to ``{"type": "event", "job_id":
    room, "seq": seq, "payload": {"sent_ns": <int>}, ...}``: a reader that
    times whatever arrives measures nothing.
    """
    try:
        message = json.loads(data)
    except ValueError:
        return "not JSON text"
    if not isinstance(message, dict) or message.get("type") != "event":
        return "not an event"
    if message.get("job_id") != room:
        return f"an event of room {message.get('job_id')!r}"
    if message.get("seq") != seq:
        return f"seq {message.get('seq')!r} where {seq} was next"
    payload = message.get("payload")
    sent = payload.get("sent_ns") if isinstance(payload, dict) else None
    if not isinstance(sent, int) or isinstance(sent, bool):
        return "no sent_ns stamp"
    return sent


class Member:
    """One room socket: its sans-I/O protocol, what it still has to write, what it expects next."""

    __slots__ = ("left", "next_seq", "opened", "pending", "room", "sock", "ws")

    def __init__(self, host: str, port: int, path: str, room: str, messages: int, deflate: bool) -> None:
        offer = enable_client_permessage_deflate(None) if deflate else None
        self.ws = ClientProtocol(parse_uri(f"ws://{host}:{port}{path}"), extensions=offer)
        self.room, self.next_seq, self.left = room, 1, messages
        self.opened = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        if sys.platform == "linux":
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.ws.send_request(self.ws.connect())
        self.pending = b"".join(self.ws.data_to_send())
        self.sock.connect_ex((host, port))

    def flush(self) -> bool:
        """Write what the protocol produced (handshake, pongs); False while some waits for the socket."""
        self.pending += b"".join(self.ws.data_to_send())
        while self.pending:
            try:
                sent = self.sock.send(self.pending)
            except BlockingIOError:
                return False
            self.pending = self.pending[sent:]
        return True


class Readings:
    """What the readers saw: latencies (ms) per verified message, and what went wrong."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.latency_ms: list[float] = []
        self.arrival_ms: list[float] = []
        self.coalesced = 0
        self.bad = 0
        self.reasons: list[str] = []
        self.closed = 0

    def wrong(self, reason: str) -> None:
        self.bad += 1
        if len(self.reasons) < 5:
            self.reasons.append(reason)


def _say(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _open(
    poller: select.epoll, spec: dict[str, Any], deadline: float
) -> tuple[dict[int, Member], str | None]:
    """Every socket connected and past its handshake, ``OPEN_BATCH`` at a time; or why not."""
    members: dict[int, Member] = {}
    wanted = [(str(p), str(r)) for p, r in spec["members"]]
    for start in range(0, len(wanted), OPEN_BATCH):
        batch: dict[int, Member] = {}
        for path, room in wanted[start : start + OPEN_BATCH]:
            member = Member(
                spec["host"], int(spec["port"]), path, room, int(spec["messages"]), spec.get("deflate", True)
            )
            batch[member.sock.fileno()] = member
            poller.register(member.sock.fileno(), select.EPOLLOUT)
        waiting = len(batch)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                return members, f"{waiting} handshakes unfinished at the time bound"
            for fd, mask in poller.poll(min(left, 1.0)):
                member = batch[fd]
                if mask & select.EPOLLOUT:
                    error = member.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        return members, f"connect failed: {os.strerror(error)}"
                    if member.flush():
                        poller.modify(fd, select.EPOLLIN)
                if not mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    continue
                data = member.sock.recv(READ_SIZE)
                if not data:
                    return members, "the server closed a socket during its handshake"
                member.ws.receive_data(data)
                for event in member.ws.events_received():
                    if isinstance(event, Response):
                        failed = member.ws.handshake_exc
                        if failed is not None:
                            status = event.status_code if isinstance(failed, InvalidStatus) else ""
                            return members, f"handshake refused {status}: {failed}"
                        member.opened = True
                        waiting -= 1
                member.flush()
        members.update(batch)
    return members, None


def _read(poller: select.epoll, members: dict[int, Member], deadline: float, readings: Readings) -> None:
    """Read until every socket has its messages, stdin asks to stop, or the time bound."""
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    waiting = sum(1 for m in members.values() if m.left > 0)
    verified: dict[tuple[str, int], tuple[bytes, int]] = {}
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        for fd, mask in poller.poll(min(left, 1.0)):
            if fd == stdin:
                return
            member = members[fd]
            if mask & select.EPOLLOUT and member.flush():
                poller.modify(fd, select.EPOLLIN)
            if not mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                continue
            try:
                data, ancillary, _flags, _addr = member.sock.recvmsg(READ_SIZE, ANCILLARY)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data, ancillary = b"", []
            now = time.time_ns()
            arrival = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = TIMESPEC.unpack(value[: TIMESPEC.size])
                    arrival = seconds * 1_000_000_000 + nanos
            if not data:
                member.ws.receive_eof()
                poller.unregister(fd)
                if member.left > 0:
                    readings.closed += 1
                    waiting -= 1
                continue
            member.ws.receive_data(data)
            first = True
            for event in member.ws.events_received():
                if not isinstance(event, Frame) or event.opcode is not Opcode.TEXT:
                    continue
                # Every socket of a room gets the same text for a publish: bytes equal to a copy
                # already verified are that event; anything else is decoded and checked.
                key = (member.room, member.next_seq)
                seen = verified.get(key)
                if seen is not None and seen[0] == event.data:
                    checked: int | str = seen[1]
                else:
                    checked = verify(event.data, member.room, member.next_seq)
                    if seen is None and not isinstance(checked, str):
                        verified[key] = (event.data, checked)
                member.next_seq += 1
                if isinstance(checked, str):
                    readings.wrong(checked)
                else:
                    readings.latency_ms.append((now - checked) / 1e6)
                    if arrival is not None:
                        # The kernel stamps the first segment a read returns; a later message in
                        # the same read arrived no earlier than that: its arrival is known only as now.
                        readings.arrival_ms.append(((arrival if first else now) - checked) / 1e6)
                        readings.coalesced += 0 if first else 1
                    first = False
                member.left -= 1
                if member.left == 0:
                    waiting -= 1
            if (member.pending or member.ws.writes) and not member.flush():
                poller.modify(fd, select.EPOLLIN | select.EPOLLOUT)


def run_readers() -> int:
    spec = json.loads(sys.stdin.readline())
    deadline = time.monotonic() + float(spec["bound_s"])
    poller = select.epoll()
    started = time.monotonic()
    members, failure = _open(poller, spec, deadline)
    if failure is not None:
        _say({"error": failure, "opened": sum(m.opened for m in members.values())})
        return 1
    _say({"opened": len(members), "open_s": round(time.monotonic() - started, 3)})
    readings = Readings(expected=len(members) * int(spec["messages"]))
    # The reader's own collector stays off while it reads (as bench_sse's client): its pauses
    # would be charged to the server. What it allocates meanwhile is bounded by the messages.
    gc.collect()
    gc.freeze()
    gc.disable()
    before = os.times()
    _read(poller, members, deadline, readings)
    after = os.times()
    for member in members.values():
        member.sock.close()
    _say(
        {
            "expected": readings.expected,
            "latency_ms": readings.latency_ms,
            "arrival_ms": readings.arrival_ms,
            "coalesced": readings.coalesced,
            "bad": readings.bad,
            "reasons": readings.reasons,
            "closed": readings.closed,
            "cpu_s": after.user - before.user + after.system - before.system,
            "cpu_sys_s": after.system - before.system,
        }
    )
    return 0


async def run_broadcast(compression: str | None) -> None:
    subscribers: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        if connection.request is not None and connection.request.path == "/publish":
            async for message in connection:
                broadcast(subscribers, message)
            return
        subscribers.add(connection)
        try:
            await connection.wait_closed()
        finally:
            subscribers.discard(connection)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def stdin_readable() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            stop.set()

    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    # No server pings, as the room server (PartyKit sends none); everything else websockets' defaults.
    async with serve(handler, "127.0.0.1", 0, compression=compression, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        _say({"port": port, "compression": compression or "none"})
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("readers", "broadcast"))
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    args = parser.parse_args()
    if args.role == "readers":
        return run_readers()
    asyncio.run(run_broadcast(None if args.compression == "none" else args.compression))
    return 0


if __name__ == "__main__":
    sys.exit(main())
