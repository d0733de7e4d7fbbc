"""`progressbench run`: the matrix of (transport, profile) cells, end to end.

Order of work: validate everything the user gave (transports, profiles,
database URL) before starting anything; start the stack; run each cell under
Locust; read the store's ground truth while the store is still up; score and
write results; tear down. An interrupted or failing run still scores and
writes the sessions it collected (``summary.json`` says it is partial):
nothing a phone saw is thrown away.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from progressbench.app.cell import CELL_ENV, CellPlan
from progressbench.app.interrupts import deferred, held
from progressbench.app.processes import spawn, stop_all
from progressbench.app.results import RAW_DIR, describe_run, read_records, write_summary, write_tables
from progressbench.app.supervisor import Stack, StackSettings
from progressbench.app.truth import ProgressProbe, read_truth
from progressbench.chaos.controller import ChaosController, validate_against
from progressbench.chaos.profiles import Profile, get_profile
from progressbench.core.config import RunConfig
from progressbench.core.errors import ConfigError
from progressbench.core.events import FaultWindow, SessionRecord
from progressbench.core.ledger import EventRow, SessionRow, account, summarize
from progressbench.kit.database import free_port
from progressbench.reports.costs import cost_breakdown, cost_per_1k_jobs
from progressbench.transports import resolve


@dataclass
class CellResult:
    transport: str
    profile: str
    sessions_path: Path
    meters: dict[str, dict[str, float]] = field(default_factory=dict)
    complete: bool = False
    seconds: float = 0.0
    started_wall_ns: int = 0
    windows: list[FaultWindow] = field(default_factory=list)
    chaos_errors: list[str] = field(default_factory=list)

    def windows_for(self, record: SessionRecord) -> list[FaultWindow]:
        """The faults that hit this phone while it watched: its cell's, and stack-wide ones."""
        return [
            w
            for w in self.windows
            if (w.cell is None or w.cell == record.cell)
            and w.start_wall_ns <= record.ended_wall_ns
            and w.end_wall_ns >= record.started_wall_ns
        ]

    def describe_windows(self) -> list[dict[str, object]]:
        return [
            {
                "cell": w.cell,
                "kind": w.kind,
                "start_s": round((w.start_wall_ns - self.started_wall_ns) / 1e9, 3),
                "duration_s": round((w.end_wall_ns - w.start_wall_ns) / 1e9, 3),
            }
            for w in sorted(self.windows, key=lambda w: w.start_wall_ns)
        ]


@dataclass
class RunOutcome:
    out: Path
    summary: dict[str, Any]
    complete: bool
    interrupted: bool


def _cell_name(transport: str, profile: str) -> str:
    return f"{transport.replace(':', '-')}__{profile}"


def is_gauge(name: str) -> bool:
    """Levels, not counts: a cell reports their value, not a difference.

    ``*_peak_connections`` is a service's high-water mark since it started.
    """
    return name.endswith("_peak_connections")


def meter_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """Counters as what the cell added; gauges (``GAUGES``) as their value at the end."""
    delta: dict[str, dict[str, float]] = {}
    for service, values in after.items():
        base = before.get(service, {})
        delta[service] = {
            k: round(v if is_gauge(k) else v - base.get(k, 0.0), 6)
            for k, v in values.items()
            if not k.endswith("_in_flight")
        }
    return delta


@contextlib.contextmanager
def _processes(
    commands: list[tuple[list[str], Path]], env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv, log_path in commands:
            procs.append(spawn(argv, log_path, env=env))
        yield procs
    finally:
        with deferred():  # SIGTERM lets Locust flush the sessions in flight
            stop_all(procs, grace_s=20)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0


def drive_cell(plan: CellPlan, locust_workers: int, log_dir: Path, progress: Progress) -> bool:
    """Run one cell under Locust (headless); True when every session was collected."""
    env = dict(os.environ)
    env[CELL_ENV] = plan.model_dump_json()
    env["PYTHONUNBUFFERED"] = "1"
    base = [sys.executable, "-m", "progressbench.loadtests.headless"]
    name = _cell_name(plan.transport, plan.profile)
    if locust_workers:
        port = free_port()
        commands = [
            (
                [
                    *base,
                    "--role",
                    "master",
                    "--master-port",
                    str(port),
                    "--expect-workers",
                    str(locust_workers),
                ],
                log_dir / f"locust-{name}-master.log",
            )
        ]
        commands += [
            (
                [*base, "--role", "worker", "--master-port", str(port)],
                log_dir / f"locust-{name}-worker{i}.log",
            )
            for i in range(1, locust_workers + 1)
        ]
    else:
        commands = [([*base, "--role", "local"], log_dir / f"locust-{name}.log")]
    task = progress.add_task(f"{plan.transport} × {plan.profile}", total=plan.expected_sessions)
    deadline = time.monotonic() + plan.deadline_s() + 30
    with _processes(commands, env) as procs:
        leader = procs[0]
        while leader.poll() is None and time.monotonic() < deadline:
            progress.update(task, completed=_count_lines(plan.sessions_path))
            time.sleep(0.2)
        progress.update(task, completed=_count_lines(plan.sessions_path))
    return leader.returncode == 0


def run_cell(
    stack: Stack,
    config: RunConfig,
    profile: Profile,
    cell: CellResult,
    run_id: str,
    log_dir: Path,
    progress: Progress,
) -> None:
    """One (transport, profile) cell: its proxies, its fault timeline, its load."""
    if profile.steps and stack.control is None:
        raise ConfigError(f"profile {profile.name!r} needs the chaos proxy, which this stack runs without")
    timing = config.timing.model_copy(update=profile.timing) if profile.timing else config.timing
    if profile.timing:
        stack.reconfigure(**profile.timing)
    plan = CellPlan(
        run_id=run_id,
        transport=cell.transport,
        profile=profile.name,
        users=config.users,
        jobs_per_user=config.jobs_per_user,
        spawn_rate=config.spawn_rate,
        seed=config.seed,
        shape=config.job,
        timing=timing,
        cell_endpoints=stack.cell_endpoints(profile.cells),
        sessions_path=cell.sessions_path.resolve(),
        options=config.client_options,
    )
    before = stack.meters()
    cell.started_wall_ns = time.time_ns()
    probe = ProgressProbe(stack.database_url, cell.started_wall_ns / 1e9)
    controller = None
    if stack.control is not None:
        controller = ChaosController(
            control=stack.control,
            profile=profile,
            time_scale=config.timing.time_scale,
            cell_proxies=stack.cell_proxy_names(profile.cells),
            dispatch_proxy=stack.dispatch_proxy,
            server_fault=lambda step: stack.server_fault(step.fault),
            progress=probe,
        )
        controller.start()
    t0 = time.monotonic()
    stopping = False
    try:
        cell.complete = drive_cell(plan, config.locust_workers, log_dir, progress)
    except KeyboardInterrupt:
        stopping = True
        raise
    finally:
        with deferred():
            cell.seconds = time.monotonic() - t0
            if controller is not None:
                cell.windows = controller.stop()
                cell.chaos_errors = list(controller.errors)
            probe.close()
            cell.meters = meter_delta(before, stack.meters())
            if profile.timing and not stopping:  # a stack about to close keeps the timing it has
                stack.reconfigure(**{k: getattr(config.timing, k) for k in profile.timing})


def execute(config: RunConfig, console: Console) -> RunOutcome:
    for name in config.transports:
        resolve(name)  # ConfigError before anything starts
    profiles: list[Profile] = [get_profile(p) for p in config.profiles]
    out = config.out
    raw = out / RAW_DIR
    log_dir = out / "logs"
    raw.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    for stale in raw.glob("*.jsonl"):
        stale.unlink()
    run_id = uuid.uuid4().hex[:12]
    started = time.time()
    cells: list[CellResult] = []
    interrupted = False
    records_by_cell: dict[tuple[str, str], list[Any]] = {}
    truth: dict[str, Any] = {}

    settings = StackSettings(
        run_dir=out,
        timing=config.timing,
        database_url=config.database_url,
        worker_instances=config.worker_instances,
        worker_concurrency=config.worker_concurrency,
        toxiproxy_url=config.toxiproxy_url,
        transports=config.transports,
        token_secret=config.token_secret,
    )
    console.print(
        f"[bold]progressbench run[/] {run_id}: {len(config.transports)} transport(s) × "
        f"{len(profiles)} profile(s), {config.users} phones × {config.jobs_per_user} jobs, "
        f"time scale {config.timing.time_scale}"
    )
    with Stack(settings) as stack:
        console.print(
            f"stack up: {stack.endpoints()} (database: {'embedded' if stack.postgres else 'external'})"
        )
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        if stack.control is not None:
            validate_against(stack.control, profiles)
        try:
            with progress:
                for transport in config.transports:
                    for profile in profiles:
                        cell = CellResult(
                            transport, profile.name, raw / f"{_cell_name(transport, profile.name)}.jsonl"
                        )
                        cells.append(cell)
                        run_cell(stack, config, profile, cell, run_id, log_dir, progress)
        except KeyboardInterrupt:
            interrupted = True
            console.print("[yellow]interrupted: scoring the sessions collected so far[/]")
        finally:
            # A stop signal while reading the results and stopping the stack marks the run
            # interrupted instead of losing what was measured.
            with held() as late:
                for cell in cells:
                    records_by_cell[(cell.transport, cell.profile)] = read_records(cell.sessions_path)
                ids = [
                    i
                    for recs in records_by_cell.values()
                    for r in recs
                    for i in [r.job_id, *r.extra_job_ids]
                    if i
                ]
                truth = read_truth(stack.database_url, ids)
                stack.close()
            if late.received and not interrupted:
                interrupted = True
                console.print("[yellow]interrupted while stopping: the results are marked partial[/]")

    all_sessions: list[SessionRow] = []
    all_events: list[EventRow] = []
    summary_cells: list[dict[str, Any]] = []
    for cell in cells:
        records = records_by_cell.get((cell.transport, cell.profile), [])
        rows, events = [], []
        for record in records:
            record = record.model_copy(update={"fault_windows": cell.windows_for(record)})
            row, evs = account(record, truth)
            rows.append(row)
            events.extend(evs)
        jobs = len({r.job_id for r in rows if r.job_id})
        flat_meters = {f"{svc}.{k}": v for svc, m in cell.meters.items() for k, v in m.items()}
        summary_cell = summarize(
            cell.transport,
            cell.profile,
            rows,
            events,
            meters=flat_meters,
            cost_usd_per_1k_jobs=cost_per_1k_jobs(
                cell.meters, jobs, config.timing.time_scale, cell_seconds=cell.seconds
            ),
        )
        summary_cell["cost_breakdown_usd"] = {
            k: round(v, 8)
            for k, v in cost_breakdown(
                cell.meters, config.timing.time_scale, cell_seconds=cell.seconds
            ).items()
        }
        summary_cell["complete"] = cell.complete
        summary_cell["seconds"] = round(cell.seconds, 3)
        summary_cell["fault_windows"] = cell.describe_windows()
        summary_cell["chaos_errors"] = cell.chaos_errors
        summary_cells.append(summary_cell)
        all_sessions.extend(rows)
        all_events.extend(events)

    complete = (
        not interrupted
        and all(c.complete for c in cells)
        and len(cells) == (len(config.transports) * len(profiles))
    )
    summary = describe_run(
        config.model_dump(mode="json"), {p.name: p.model_dump(mode="json", by_alias=True) for p in profiles}
    )
    summary.update(
        {
            "run_id": run_id,
            "complete": complete,
            "interrupted": interrupted,
            "timing": {"started_at": started, "seconds": round(time.time() - started, 3)},
            "cells": summary_cells,
        }
    )
    write_tables(out, all_sessions, all_events)
    write_summary(out, summary)
    from progressbench.reports.render import render_reports

    render_reports(out, summary, all_sessions, all_events)
    return RunOutcome(out=out, summary=summary, complete=complete, interrupted=interrupted)
