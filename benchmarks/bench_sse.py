"""1,000 concurrent ``sse`` streams on one API process: memory per stream and commit-to-client latency.

Starts a real stack (embedded Postgres, one API, one worker), creates
``JOBS`` jobs through ``POST /sse/jobs`` and opens ``STREAMS`` event streams
spread over them with a raw asyncio client (one socket per stream, no HTTP
library in the way). Prints:

* the API process's RSS before and after the streams are open (``/proc``),
  and the delta per stream;
* commit-to-client latency p50/p95/p99 of events committed after their
  stream was open (``committed_at`` in the event vs the client's wall clock,
  same host);
* the API's Postgres connections (the point: one LISTEN connection per
  process, not one per stream).

Nothing is asserted. Bounded by ``BUDGET_S``. Run:
``python benchmarks/bench_sse.py [streams] [jobs]``.
"""

from __future__ import annotations

import asyncio
import json
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

STREAMS = 1000
JOBS = 100
BUDGET_S = 85.0
TIME_SCALE = 0.4  # a default 14-step job takes about 20 s
SHAPE = JobShape()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Stream:
    def __init__(self) -> None:
        self.opened_wall = 0.0
        self.latencies_ms: list[float] = []
        self.done = False
        self.error: str | None = None


async def open_stream(
    host: str, port: int, href: str, token: str, out: Stream, opened: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            (
                f"GET {href} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            out.error = status.decode(errors="replace").strip()
            return
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        out.opened_wall = time.time()
        opened.set()
        while True:
            line = await reader.readline()
            if not line:
                return
            if not line.startswith(b"data:"):
                continue
            now = time.time()
            event = json.loads(line[5:])
            committed = datetime.fromisoformat(event["committed_at"]).timestamp()
            if committed >= out.opened_wall:
                out.latencies_ms.append((now - committed) * 1000.0)
            if event["kind"] in ("done", "failed"):
                out.done = True
                return
    except (OSError, ValueError) as exc:
        out.error = repr(exc)
    finally:
        writer.close()


def api_db_connections(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE query ILIKE 'LISTEN%%') "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def bench(stack: Stack, streams: int, jobs: int) -> None:
    api = stack.endpoints()["api"]
    parts = urlsplit(api)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    api_pid = stack.services["api"].instances[0].pid
    db_before = api_db_connections(stack.database_url)
    body = {"time_scale": TIME_SCALE, "shape": SHAPE.model_dump(mode="json")}
    # The operator holds the project secret: an access token minted with it is a signed-in user's.
    user, _ = identity.issue_access(stack.secret, uuid.uuid4(), "bench@bench.test", uuid.uuid4())
    headers = {"authorization": f"Bearer {user}"}
    async with httpx.AsyncClient(base_url=api, timeout=30, headers=headers) as http:
        # Warm the API (imports, pools, the notify hub) before measuring its baseline.
        warm = (await http.post("/sse/jobs", json=body)).json()
        await asyncio.sleep(0.5)
        rss_before = rss_kib(api_pid)
        created = [(await http.post("/sse/jobs", json=body)).json() for _ in range(jobs)]
    del warm
    results = [Stream() for _ in range(streams)]
    opened = [asyncio.Event() for _ in range(streams)]
    t0 = time.monotonic()
    tasks = []
    for i in range(streams):
        job = created[i % jobs]
        tasks.append(
            asyncio.create_task(
                open_stream(host, port, job["events_href"], job["token"], results[i], opened[i])
            )
        )
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the event loop breathe between batches
    await asyncio.wait([asyncio.create_task(e.wait()) for e in opened], timeout=30)
    open_s = time.monotonic() - t0
    await asyncio.sleep(1.0)
    rss_open = rss_kib(api_pid)
    db_open = api_db_connections(stack.database_url)
    open_count = sum(1 for r in results if r.opened_wall)
    _done, pending = await asyncio.wait(tasks, timeout=max(BUDGET_S - (time.monotonic() - t0) - 10, 5))
    for task in pending:
        task.cancel()
    latencies = [v for r in results for v in r.latencies_ms]
    errors = [r.error for r in results if r.error]
    delta = rss_open - rss_before
    print(f"streams requested {streams}, open {open_count} (in {open_s:.1f} s), jobs {jobs}")
    print(f"API RSS before {rss_before / 1024:.1f} MiB, with streams open {rss_open / 1024:.1f} MiB")
    print(f"memory per stream: {delta / max(open_count, 1):.1f} KiB (RSS delta / open streams)")
    print(
        f"postgres connections (all services): before {db_before[0]}, with streams open {db_open[0]} "
        f"of which LISTEN: {db_open[1]}"
    )
    print(f"streams that got the terminal event: {sum(r.done for r in results)}; errors: {len(errors)}")
    if errors:
        print(f"first error: {errors[0]}")
    p = {q: percentile(latencies, q) for q in (50, 95, 99)}
    print(
        f"commit-to-client latency over {len(latencies)} live events: "
        + ", ".join(f"p{q} {v:.1f} ms" if v is not None else f"p{q} n/a" for q, v in p.items())
    )
    record("sse.kib_per_stream", delta / max(open_count, 1), "KiB", streams=open_count)
    record("sse.latency_p99_ms", p[99], "ms", streams=open_count, events=len(latencies))


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
