"""Commit-to-client latency of ``realtime`` for 1, 100 and 500 subscribers on one realtime process.

Starts a real stack (embedded Postgres, API, one worker, one realtime
server) and, for each subscriber count N, measures two shapes:

* ``per-job``: N phones, each subscribed (``owner=eq.<user>``, its own JWT)
  before its own job is created — the production pattern, N jobs at once;
* ``fan-out``: N subscribers with their own JWTs for the same owner, one job
  — every change is RLS-checked N times (Supabase's "100 subscribers × 1
  insert = 100 reads").

Clients: the official ``realtime`` client (unchanged) for the first
``OFFICIAL`` subscribers of each case, and a minimal raw Phoenix V1 client
(``websockets``: join with ``access_token``, read ``postgres_changes``) for
the rest — 500 official clients in one process cost more client CPU than the
server being measured (~0.1 ms to parse each frame). Latency is the row's
``committed_at`` (``clock_timestamp()`` at insert, a hair before the commit)
to the client's receive wall clock, same host; it includes the client-side
queueing of a 2-core machine shared by Postgres, the worker, the realtime
server and every client. Prints p50/p95/p99, the number of samples, and the
realtime server's message counter. Nothing is asserted; bounded by
``BUDGET_S``. Run: ``python benchmarks/bench_realtime.py [counts...] [--per-job]``
(``--per-job``: only the per-job shape, the one the anchors are about; a
shorter run for A/B comparisons).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from realtime import AsyncRealtimeClient
from realtime.types import RealtimePostgresChangesListenEvent
from websockets.asyncio.client import ClientConnection, connect

from progressbench.app.bench_figures import record
from progressbench.app.supervisor import Stack, StackSettings
from progressbench.core import identity, tokens
from progressbench.core.config import JobShape, Timing, Wave
from progressbench.core.ledger import percentile

COUNTS = (1, 100, 500)
OFFICIAL = 5
BUDGET_S = 115.0
SHAPE = JobShape(waves=(Wave(label="Step", items=5),), step_seconds_min=0.5, step_seconds_max=1.0)
EVENTS_PER_JOB = SHAPE.total_steps + 1


def cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _received(record: dict[str, Any], sink: list[float]) -> None:
    committed = datetime.fromisoformat(str(record["committed_at"])).timestamp()
    sink.append((time.time() - committed) * 1000.0)


class RawPhoenix:
    """The least a Phoenix V1 client must do to receive postgres_changes."""

    def __init__(self, url: str, anon: str, token: str, owner: str, sink: list[float]) -> None:
        self.url = f"{url.replace('http', 'ws', 1)}/realtime/v1/websocket?apikey={anon}&vsn=1.0.0"
        self.token, self.owner, self.sink = token, owner, sink
        self.live = asyncio.Event()
        self.ws: ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.ws = await connect(self.url, open_timeout=30)
        binding = {
            "event": "INSERT",
            "schema": "public",
            "table": "job_events",
            "filter": f"owner=eq.{self.owner}",
        }
        join = {
            "event": "phx_join",
            "payload": {"config": {"postgres_changes": [binding]}, "access_token": self.token},
            "topic": f"realtime:{uuid.uuid4().hex[:8]}",
            "ref": "1",
            "join_ref": "1",
        }
        await self.ws.send(json.dumps(join))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for text in self.ws:
            frame = json.loads(text)
            if frame["event"] == "postgres_changes":
                _received(frame["payload"]["data"]["record"], self.sink)
            elif frame["event"] == "system":
                self.live.set()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Official:
    def __init__(self, url: str, anon: str, token: str, owner: str, sink: list[float]) -> None:
        self.client = AsyncRealtimeClient(f"{url}/realtime/v1", token=anon)
        self.token, self.owner, self.sink = token, owner, sink
        self.live = asyncio.Event()

    async def start(self) -> None:
        await self.client.set_auth(self.token)
        channel = self.client.channel(uuid.uuid4().hex[:8])
        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert,
            lambda payload: _received(payload["data"].get("record") or {}, self.sink),
            table="job_events",
            filter=f"owner=eq.{self.owner}",
        )
        channel.on_system(lambda payload: self.live.set())
        await channel.subscribe()

    async def close(self) -> None:
        await self.client.close()


def as_user(secret: str, owner: str) -> dict[str, str]:
    """The Authorization header of the user ``owner`` (a uuid), minted with the project secret."""
    token, _ = identity.issue_access(secret, uuid.UUID(owner), f"{owner}@bench.test", uuid.uuid4())
    return {"authorization": f"Bearer {token}"}


def create_jobs(api: str, secret: str, owners: list[str]) -> list[int]:
    """POST one job per owner, 50 at a time; the statuses. Runs in a process of its own.

    httpx with 50 requests in flight cost this benchmark's process more CPU than
    reading every frame of 500 subscribers (its pool is scanned per request), and
    a receiving event loop busy posting stamps frames late: the jobs are created
    from another process, as phones would from their own devices.
    """

    async def post_all() -> list[int]:
        body = {"seed": 1, "time_scale": 1.0, "shape": SHAPE.model_dump(mode="json")}
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            for start in range(0, len(owners), 50):
                batch = owners[start : start + 50]
                answers = await asyncio.gather(
                    *(http.post("/realtime/jobs", json=body, headers=as_user(secret, o)) for o in batch)
                )
                statuses += [a.status_code for a in answers]
        return statuses

    return asyncio.run(post_all())


async def run_case(stack: Stack, pool: ProcessPoolExecutor, anon: str, n: int, mode: str) -> None:
    rt, api = stack.endpoints()["realtime"], stack.endpoints()["api"]
    pids = {role: stack.services[role].live()[0].pid for role in ("realtime", "worker")}
    cpu0 = {role: cpu_s(pid) for role, pid in pids.items()}
    # The operator holds the project secret: users are minted, not signed up (scrypt per phone
    # would measure the sign-in service). A user's id is the owner of its jobs.
    team = str(uuid.uuid4())
    owners = [str(uuid.uuid4()) for _ in range(n)] if mode == "per-job" else [team] * n
    sink: list[float] = []
    official: list[float] = []
    subs: list[Official | RawPhoenix] = []
    for i, owner in enumerate(owners):
        token = tokens.issue(stack.secret, owner, uuid.uuid4(), ttl_s=600)
        if i < OFFICIAL:
            subs.append(Official(rt, anon, token, owner, official))
        else:
            subs.append(RawPhoenix(rt, anon, token, owner, sink))
    t0 = time.monotonic()
    try:
        for start in range(0, n, 50):
            await asyncio.gather(*(s.start() for s in subs[start : start + 50]))
        await asyncio.wait_for(asyncio.gather(*(s.live.wait() for s in subs)), 60)
        ready_s = time.monotonic() - t0
        job_owners = sorted(set(owners))
        expected = len(job_owners) * EVENTS_PER_JOB * (n if mode == "fan-out" else 1)
        loop = asyncio.get_running_loop()
        statuses = await loop.run_in_executor(pool, create_jobs, api, stack.secret, job_owners)
        if any(s != 202 for s in statuses):
            print(f"job creation: {sorted(set(statuses))} (not all 202)", flush=True)
        deadline = time.monotonic() + 40
        while len(sink) + len(official) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await asyncio.gather(*(s.close() for s in subs), return_exceptions=True)
    off50, off95 = (percentile(official, q) or float("nan") for q in (50, 95))
    sink = sink + official
    p50, p95, p99 = (percentile(sink, q) or float("nan") for q in (50, 95, 99))
    print(
        f"{mode:8} N={n:4}  subscribed in {ready_s:5.1f}s  samples {len(sink):6}/{expected:<6} "
        f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms"
        f"  (official client only: p50 {off50:.1f} p95 {off95:.1f} ms)"
        f"  cpu s: realtime {cpu_s(pids['realtime']) - cpu0['realtime']:.1f}, "
        f"worker {cpu_s(pids['worker']) - cpu0['worker']:.1f}",
        flush=True,
    )
    if mode == "per-job":
        record(f"realtime.per_job_p95_ms_{n}", p95, "ms", samples=len(sink), expected=expected)


async def bench(stack: Stack, counts: tuple[int, ...], modes: tuple[str, ...]) -> None:
    async with httpx.AsyncClient(base_url=stack.endpoints()["api"], timeout=30) as http:
        created = (
            await http.post(
                "/realtime/jobs",
                json={"shape": SHAPE.model_dump()},
                headers=as_user(stack.secret, str(uuid.uuid4())),
            )
        ).json()
    anon = created["anon_key"]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        # Started (its imports paid) before anything is measured.
        await asyncio.get_running_loop().run_in_executor(pool, create_jobs, "http://127.0.0.1:1", "", [])
        for n in counts:
            for mode in modes:
                await run_case(stack, pool, anon, n, mode)
    meters = stack.meters()["realtime"]
    print(
        f"realtime server: {meters.get('pb_realtime_messages_total', 0):.0f} messages, "
        f"peak {meters.get('pb_peak_connections', 0):.0f} connections"
    )


def main() -> None:
    args = sys.argv[1:]
    modes = ("per-job",) if "--per-job" in args else ("per-job", "fan-out")
    counts = tuple(int(a) for a in args if a != "--per-job") or COUNTS
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as tmp:
        settings = StackSettings(
            run_dir=Path(tmp),
            timing=Timing(time_scale=1.0),
            transports=("realtime",),
            worker_concurrency=max(counts) + 20,
        )
        with Stack(settings) as stack:
            asyncio.run(asyncio.wait_for(bench(stack, counts, modes), BUDGET_S))


if __name__ == "__main__":
    main()
