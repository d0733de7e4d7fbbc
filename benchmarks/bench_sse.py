"""1,000 concurrent ``sse`` streams on one API process: memory per stream and commit-to-client latency.

Starts a real stack (embedded Postgres, one API, one worker), creates
``JOBS`` jobs through ``POST /sse/jobs`` and opens ``STREAMS`` event streams
spread over them with a raw asyncio client (one socket per stream, no HTTP
library in the way). Prints:

* the API process's RSS before and after the streams are open (``/proc``),
  and the delta per stream;
* commit-to-client latency p50/p95/p99 of events committed after their
  stream was open (``committed_at`` in the event vs the client's wall clock,
  same host, taken when the bytes are read off the socket), for all of
  them, and split into three phases by commit time:

  - *opening*: while streams were still being opened, and for the settle
    second after the last one opened (the API is still working through the
    opening burst: authenticating, subscribing, each stream's first read);
  - *steady*: every stream open and settled, up to the first terminal event
    (the steady state at ``STREAMS`` streams);
  - *closing*: from the first terminal event on. The jobs start within a
    second of each other and end within a few; their last steps, their
    terminal events and the streams' closes then land on the API together;
* the machine's load average before and after, and the CPU the API, the
  worker and this process (the phones) used while streaming: a figure taken
  on a saturated machine measures the machine;
* the API's Postgres connections (the point: one LISTEN connection per
  process, not one per stream);
* the API's garbage collections, per generation, while the streams opened
  and with every stream open: how many, their total pause and the longest
  (within a bucket of the API's ``pb_gc_pause_seconds`` histogram, read from
  its admin socket before and after). A full (generation 2) collection walks
  every stream's objects and stops the API's loop meanwhile: when the
  steady-state tail is long, these lines say whether a collection was in it.

The anchor's figure (``sse.latency_p99_ms``) is the steady state the issue
names, "at 1,000 streams": events committed with every stream open, before
the first one closes. The two transients are recorded beside it, never
folded away: ``sse.latency_p99_ms_opening``, ``sse.latency_p99_ms_closing``,
and the whole run's ``sse.latency_p99_ms_all``. Before 2026-12-01 the steady
window ran from the last stream's opening to the end of the run, so it took
in both transients: its p99 ranged 14-170 ms across quiet runs, and where it
was long, the long latencies sat in the first 0.25 s or the last second
(the README's Performance section has the phases of those runs). While streaming, this
process's garbage collector is off (``timeit`` does the same): its own
collections of 1,000 streams' objects would add pauses of the measuring
client to a figure about the server. The API keeps its collector.

Nothing is asserted. Bounded by ``BUDGET_S``. Run:
``python benchmarks/bench_sse.py [streams] [jobs]``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

from progressbench.app.bench_figures import record
from progressbench.app.supervisor import Stack, StackSettings
from progressbench.core import identity
from progressbench.core.config import JobShape, Timing
from progressbench.core.ledger import percentile
from progressbench.kit import gcpauses

STREAMS = 1000
JOBS = 100
BUDGET_S = 85.0
TIME_SCALE = 0.4  # a default 14-step job takes about 20 s
#: After the last stream opened, before the steady state begins: the API works through the
#: opening burst's backlog (each stream's subscription and first read) after the last 200 is sent.
SETTLE_S = 1.0
SHAPE = JobShape()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Stream(asyncio.Protocol):
    """One stream's socket: each event's receive time is taken when its bytes are read off the socket.

    A callback per read (``data_received``), not a task per line: the time is
    the first moment this process sees the bytes, so a busy client loop adds
    as little as it can to the figure it measures.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.opened_wall = 0.0
        #: (committed, received) wall times of each live event (committed after the stream opened)
        self.live: list[tuple[float, float]] = []
        self.done = False
        #: When the stream's terminal event was committed (its job ended): the closing phase's start.
        self.ended_committed: float | None = None
        self.error: str | None = None
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self._buffer = b""
        self._head = True
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self._buffer += data
        if self._head:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self._buffer[: self._buffer.find(b"\r\n")]
            self._buffer, self._head = self._buffer[end + 4 :], False
            if b" 200 " not in status:
                self.error = status.decode(errors="replace").strip()
                self._close()
                return
            self.opened_wall = now
            self.opened.set()
        # The body is chunked; every event is whole in its chunk, so plain lines are enough here.
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            try:
                event = json.loads(line[5:])
                committed = datetime.fromisoformat(event["committed_at"]).timestamp()
            except (ValueError, KeyError) as exc:
                self.error = repr(exc)
                self._close()
                return
            if committed >= self.opened_wall:
                self.live.append((committed, now))
            if event["kind"] in ("done", "failed"):
                self.done = True
                self.ended_committed = committed
                self._close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None and not self.done:
            self.error = repr(exc)
        self.opened.set()
        self.closed.set()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_stream(host: str, port: int, out: Stream) -> None:
    try:
        await asyncio.get_running_loop().create_connection(lambda: out, host, port)
    except OSError as exc:
        out.error = repr(exc)
        out.opened.set()
        out.closed.set()


def stream_request(host: str, port: int, href: str, token: str) -> bytes:
    return (
        f"GET {href} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()


def phases(
    live: list[tuple[float, float]], settled: float, first_end: float
) -> tuple[list[float], list[float], list[float]]:
    """Latencies (ms) of ``(committed, ms)`` pairs, by commit time: before ``settled`` (opening), from
    it to the first terminal event's commit ``first_end`` (steady), and from there on (closing).

    Every event falls in exactly one phase: the steady window can be empty (a job that ended
    before the streams settled), never the other two's events counted in it.
    """
    closing_from = max(first_end, settled)
    opening = [ms for c, ms in live if c < settled]
    steady = [ms for c, ms in live if settled <= c < closing_from]
    closing = [ms for c, ms in live if c >= closing_from]
    return opening, steady, closing


def show(name: str, latencies: list[float]) -> dict[int, float | None]:
    p = {q: percentile(latencies, q) for q in (50, 95, 99)}
    print(
        f"commit-to-client latency over {len(latencies)} {name}: "
        + ", ".join(f"p{q} {v:.1f} ms" if v is not None else f"p{q} n/a" for q, v in p.items())
    )
    return p


async def api_collections(admin_url: str) -> dict[int, gcpauses.Tally]:
    """The API's garbage collections so far, per generation (its admin socket's meters)."""
    async with httpx.AsyncClient(timeout=10) as admin:
        return gcpauses.tallies((await admin.get(f"{admin_url}/metrics")).text)


def show_collections(when: str, before: dict[int, gcpauses.Tally], after: dict[int, gcpauses.Tally]) -> None:
    parts = []
    for generation, tally in sorted(after.items()):
        t = tally.since(before[generation])
        longest = t.longest_at_most_s
        bound = "" if longest is None else f", longest <= {1000 * longest:g} ms"
        parts.append(f"gen{generation} {t.count} ({1000 * t.total_s:.0f} ms in all{bound})")
    print(f"API garbage collections {when}: " + ", ".join(parts))


def api_db_connections(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE query ILIKE 'LISTEN%%') "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def bench(stack: Stack, streams: int, jobs: int) -> None:
    started = time.monotonic()
    api = stack.endpoints()["api"]
    parts = urlsplit(api)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    api_pid = stack.services["api"].instances[0].pid
    api_admin = stack.services["api"].instances[0].admin_url
    worker_pid = stack.services["worker"].instances[0].pid
    load_before = os.getloadavg()[0]
    db_before = api_db_connections(stack.database_url)
    body = {"time_scale": TIME_SCALE, "shape": SHAPE.model_dump(mode="json")}
    # The operator holds the project secret: an access token minted with it is a signed-in user's.
    user, _ = identity.issue_access(stack.secret, uuid.uuid4(), "bench@bench.test", uuid.uuid4())
    headers = {"authorization": f"Bearer {user}"}
    async with httpx.AsyncClient(base_url=api, timeout=30, headers=headers) as http:
        # Warm the API (imports, pools, the notify hub) before measuring its baseline: one job, one
        # stream opened and closed (the hub's LISTEN connection is the process's, not a stream's).
        # The baseline is taken after the jobs are created, so only the streams are in the delta.
        warm = (await http.post("/sse/jobs", json=body)).json()
        async with http.stream("GET", warm["events_href"]) as first:
            async for _ in first.aiter_bytes():
                break
        created = [(await http.post("/sse/jobs", json=body)).json() for _ in range(jobs)]
        await asyncio.sleep(0.5)
        rss_before = rss_kib(api_pid)
    del warm
    gc_before = await api_collections(api_admin)
    results = [
        Stream(stream_request(host, port, created[i % jobs]["events_href"], created[i % jobs]["token"]))
        for i in range(streams)
    ]
    t0 = time.monotonic()
    cpu0 = {"API": cpu_s(api_pid), "worker": cpu_s(worker_pid), "bench (the phones)": time.process_time()}
    openers = []
    for i, out in enumerate(results):
        openers.append(asyncio.create_task(open_stream(host, port, out)))
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the event loop breathe between batches
    await asyncio.wait([asyncio.create_task(r.opened.wait()) for r in results], timeout=30)
    open_s = time.monotonic() - t0
    gc_open = await api_collections(api_admin)
    await asyncio.sleep(SETTLE_S)
    settled_wall = time.time()
    rss_open = rss_kib(api_pid)
    db_open = api_db_connections(stack.database_url)
    open_count = sum(1 for r in results if r.opened_wall)
    closing = [asyncio.create_task(r.closed.wait()) for r in results]
    # What is left of the budget (from the start, job creation included: a loaded machine is slow
    # there too), less a margin for the report.
    left = BUDGET_S - (time.monotonic() - started) - 10
    gc.disable()  # the measuring client's own pauses are not the server's latency (see the docstring)
    try:
        _done, pending = await asyncio.wait(closing, timeout=max(left, 1))
    finally:
        gc.enable()
    for task in pending:
        task.cancel()
    wall = time.monotonic() - t0
    gc_end = await api_collections(api_admin)
    cpu1 = {"API": cpu_s(api_pid), "worker": cpu_s(worker_pid), "bench (the phones)": time.process_time()}
    live = [(c, (r - c) * 1000.0) for out in results for c, r in out.live]
    latencies = [ms for _, ms in live]
    errors = [r.error for r in results if r.error]
    delta = rss_open - rss_before
    print(f"streams requested {streams}, open {open_count} (in {open_s:.1f} s), jobs {jobs}")
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    print(
        f"CPU while streaming ({wall:.0f} s, % of one core): "
        + ", ".join(f"{k} {100 * (cpu1[k] - cpu0[k]) / wall:.0f} %" for k in cpu0)
    )
    print(f"API RSS before {rss_before / 1024:.1f} MiB, with streams open {rss_open / 1024:.1f} MiB")
    print(f"memory per stream: {delta / max(open_count, 1):.1f} KiB (RSS delta / open streams)")
    print(
        f"postgres connections (all services): before {db_before[0]}, with streams open {db_open[0]} "
        f"of which LISTEN: {db_open[1]}"
    )
    print(f"streams that got the terminal event: {sum(r.done for r in results)}; errors: {len(errors)}")
    if errors:
        print(f"first error: {errors[0]}")
    show_collections("while the streams opened", gc_before, gc_open)
    show_collections("with every stream open", gc_open, gc_end)
    full = gc_end[2].since(gc_open[2])
    every = show("live events", latencies)
    first_end = min(
        (r.ended_committed for r in results if r.ended_committed is not None), default=float("inf")
    )
    opening_ms, steady_ms, closing_ms = phases(live, settled_wall, first_end)
    opening = show(f"events committed while streams opened (and {SETTLE_S:g} s after)", opening_ms)
    steady = show("events committed with every stream open, before the first closed", steady_ms)
    closing = show("events committed from the first terminal event on (streams closing)", closing_ms)
    record("sse.kib_per_stream", delta / max(open_count, 1), "KiB", streams=open_count)
    record(
        "sse.latency_p99_ms",
        steady[99],
        "ms",
        streams=open_count,
        events=len(steady_ms),
        api_full_collections=full.count,
        api_full_collection_ms=round(1000 * full.total_s, 1),
    )
    record("sse.latency_p99_ms_opening", opening[99], "ms", streams=open_count, events=len(opening_ms))
    record("sse.latency_p99_ms_closing", closing[99], "ms", streams=open_count, events=len(closing_ms))
    record("sse.latency_p99_ms_all", every[99], "ms", streams=open_count, events=len(latencies))


def main() -> None:
    streams = int(sys.argv[1]) if len(sys.argv) > 1 else STREAMS
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else JOBS
    timing = Timing(time_scale=TIME_SCALE)
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(
            run_dir=Path(tmp),
            timing=timing,
            api_concurrency=min(streams, 1000),
            worker_concurrency=min(jobs + 20, 1000),
        )
        with Stack(settings) as stack:
            asyncio.run(asyncio.wait_for(bench(stack, streams, jobs), BUDGET_S))


if __name__ == "__main__":
    main()
