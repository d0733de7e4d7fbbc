"""Status polls per second on one API process: conditional polls (``If-None-Match``) and full reads.

Starts a real stack (embedded Postgres, one API, one worker), creates
``JOBS`` jobs whose steps are long (so most polls find nothing new) and runs
``CLIENTS`` keep-alive connections that poll their jobs back to back for
``SECONDS`` each phase, with a raw asyncio client (no HTTP library's CPU in
the way: client and API share this machine's cores). Two phases:

* ``conditional``: each poll sends the ETag it last got; an unchanged job is
  a 304, answered from the API's memory when its notify feed says the job
  has not moved (no database read);
* ``full``: no ETag, every poll is a 200 with the state (a job read and an
  event read).

Prints per phase the polls answered per wall second, the API's CPU seconds
per 1,000 polls (``/proc``), and polls per API CPU-second (what one API
process could answer with a core to itself), plus the store reads per poll
from the API's own meter. Nothing is asserted. Run:
``python benchmarks/bench_polling.py [clients] [seconds]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from progressbench.app.bench_figures import record
from progressbench.app.supervisor import Stack, StackSettings
from progressbench.core import identity
from progressbench.core.config import JobShape, Timing

CLIENTS = 32
JOBS = 64
SECONDS = 8.0
TIME_SCALE = 1.0  # steps of 20-60 s: the jobs hardly move while they are polled
SHAPE = JobShape(step_seconds_min=20, step_seconds_max=60)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def poller(
    host: str, port: int, jobs: list[dict[str, str]], conditional: bool, until: float, counts: dict[str, int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    etags: dict[str, str] = {}
    i = 0
    try:
        while time.monotonic() < until:
            job = jobs[i % len(jobs)]
            i += 1
            extra = f"If-None-Match: {etags[job['href']]}\r\n" if conditional and job["href"] in etags else ""
            writer.write(
                f"GET {job['href']} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {job['token']}\r\n"
                f"{extra}\r\n".encode()
            )
            status = (await reader.readline()).split()[1].decode()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "etag":
                    etags[job["href"]] = value.strip()
            if length:
                await reader.readexactly(length)
            counts[status] = counts.get(status, 0) + 1
    finally:
        writer.close()


def db_reads(api: str) -> float:
    for line in httpx.get(api + "/metrics", timeout=10).text.splitlines():
        if line.startswith('pb_db_reads_total{service="api"}'):
            return float(line.split()[-1])
    return 0.0


async def phase(
    stack: Stack, jobs: list[dict[str, str]], clients: int, seconds: float, conditional: bool
) -> dict[str, float]:
    api = stack.endpoints()["api"]
    parts = urlsplit(api)
    pid = stack.services["api"].instances[0].pid
    counts: dict[str, int] = {}
    # one unmeasured pass so every job's ETag is known (and remembered) before the clock starts
    await asyncio.gather(
        *(
            poller(parts.hostname or "", parts.port or 80, jobs, conditional, time.monotonic() + 1.0, {})
            for _ in range(2)
        )
    )
    reads0, cpu0, t0 = db_reads(api), cpu_s(pid), time.monotonic()
    until = t0 + seconds
    await asyncio.gather(
        *(
            poller(
                parts.hostname or "", parts.port or 80, jobs[c::clients] or jobs, conditional, until, counts
            )
            for c in range(clients)
        )
    )
    wall, cpu = time.monotonic() - t0, cpu_s(pid) - cpu0
    polls = sum(counts.values())
    reads = db_reads(api) - reads0
    name = "conditional" if conditional else "full"
    print(
        f"{name:>11}: {polls} polls in {wall:.1f} s = {polls / wall:,.0f}/s wall; answers {counts}; "
        f"API CPU {cpu * 1000 / max(polls, 1):.3f} s per 1k polls = {polls / max(cpu, 1e-9):,.0f} polls per "
        f"API CPU-second; store reads per poll {reads / max(polls, 1):.3f}"
    )
    return {
        "wall_rate": polls / wall,
        "cpu_rate": polls / max(cpu, 1e-9),
        "reads_per_poll": reads / max(polls, 1),
    }


async def bench(stack: Stack, clients: int, seconds: float) -> None:
    api = stack.endpoints()["api"]
    body = {"time_scale": TIME_SCALE, "shape": SHAPE.model_dump(mode="json")}
    user, _ = identity.issue_access(stack.secret, uuid.uuid4(), "bench@bench.test", uuid.uuid4())
    async with httpx.AsyncClient(
        base_url=api, timeout=30, headers={"authorization": f"Bearer {user}"}
    ) as http:
        jobs = [(await http.post("/polling/jobs", json=body)).json() for _ in range(JOBS)]
    await asyncio.sleep(1.0)  # let dispatch move every job to running
    for name, conditional in (("conditional", True), ("full", False)):
        rates = await phase(stack, jobs, clients, seconds, conditional=conditional)
        record(
            f"polling.{name}_polls_per_api_cpu_s",
            rates["cpu_rate"],
            "polls/s",
            clients=clients,
            wall_rate=round(rates["wall_rate"]),
            reads_per_poll=round(rates["reads_per_poll"], 3),
        )


def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else CLIENTS
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else SECONDS
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(
            run_dir=Path(tmp), timing=Timing(time_scale=TIME_SCALE), api_concurrency=1000
        )
        with Stack(settings) as stack:
            asyncio.run(asyncio.wait_for(bench(stack, clients, seconds), 4 * seconds + 60))


if __name__ == "__main__":
    main()
