"""`progressbench run`: the matrix of (transport, profile) cells, end to end.

Order of work: validate everything the user gave (transports, profiles,
database URL) before starting anything; start the stack; run each cell under
Locust; read the store's ground truth while the store is still up; score and
write results; tear down. An interrupted or failing run still scores and
writes the sessions it collected (``summary.json`` says it is partial):
nothing a phone saw is thrown away.

This module orchestrates only: the Locust processes are
:mod:`~progressbench.app.loadgen`'s, the scoring and the summary
:mod:`~progressbench.app.scoring`'s, what a person sees a :class:`RunView`'s.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from progressbench.app.canary import Canary
from progressbench.app.cell import CellPlan
from progressbench.app.cell_result import CellResult, cell_name, meter_delta
from progressbench.app.cpu_sampler import CpuSampler, Target
from progressbench.app.interrupts import deferred, held
from progressbench.app.loadgen import OnCollected, drive_cell
from progressbench.app.rendering import render_run
from progressbench.app.results import RAW_DIR, provenance, read_records, write_summary, write_tables
from progressbench.app.scoring import build_summary, run_complete, score_cell
from progressbench.app.supervisor import Stack, StackSettings
from progressbench.app.truth import ProgressProbe, read_truth
from progressbench.chaos.controller import ChaosController, validate_against
from progressbench.chaos.profiles import Profile, get_profile
from progressbench.core.config import Limits, RunConfig, ServerConditions
from progressbench.core.errors import ConfigError
from progressbench.core.events import FaultWindow, SessionRecord
from progressbench.core.job import JobSpec
from progressbench.core.job import plan as plan_job
from progressbench.core.ledger import EventRow, JobTruth, SessionRow
from progressbench.core.summary import CellSummary, RunTiming, Summary
from progressbench.core.timers import measured
from progressbench.reports.prices import PriceBook, load_prices
from progressbench.reports.related import LOCUST_DIR
from progressbench.transports.registry import resolve


class RunView(Protocol):
    """What the runner tells whoever watches (``progress_ui.RichRunView`` on a console)."""

    def run_started(self, run_id: str, config: RunConfig) -> None: ...

    def stack_up(self, endpoints: Mapping[str, str], embedded_database: bool) -> None: ...

    def cells(self) -> contextlib.AbstractContextManager[None]: ...

    def cell_started(self, transport: str, profile: str, sessions: int) -> OnCollected: ...

    def interrupted(self, late: bool = False) -> None: ...


@dataclass
class RunOutcome:
    out: Path
    summary: Summary
    complete: bool
    interrupted: bool
    #: Where the cells' Locust logs are (``run --parallel`` keeps each part's own).
    logs: str = ""
    #: What went wrong outside the cells (a ``run --parallel`` part that failed), one line each.
    problems: list[str] = field(default_factory=list)

    def empty_cells(self) -> list[CellSummary]:
        """Cells where not one phone session was collected: the testbed, not the transport, failed."""
        return [c for c in self.summary.cells if not c.sessions]

    def short_cells(self) -> list[CellSummary]:
        return [c for c in self.summary.cells if not c.complete]


#: The timers a replacement worker's and a scale-out's cold start are listed under when they
#: could not follow the scale.
COLD_START = "replacement instance cold start"
SCALE_OUT_START = "scale-out instance cold start"


def run_cell(
    stack: Stack,
    config: RunConfig,
    profile: Profile,
    cell: CellResult,
    run_id: str,
    log_dir: Path,
    view: RunView,
) -> None:
    """One (transport, profile) cell: its proxies, its fault timeline, its load."""
    if profile.steps and stack.control is None:
        raise ConfigError(f"profile {profile.name!r} needs the chaos proxy, which this stack runs without")
    timing = config.timing.model_copy(update=profile.timing) if profile.timing else config.timing
    redeploy = bool(profile.timing) or profile.conditions is not None
    if redeploy:
        stack.reconfigure(conditions=profile.conditions or ServerConditions(), **profile.timing)
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
        options=client_options(config),
        database_url=stack.database_url,
        locust_stats=(config.out / LOCUST_DIR / cell_name(cell.transport, profile.name)).resolve(),
    )
    cell.planned_sessions = plan.expected_sessions
    stack.settle()
    before = stack.meters()
    startups = len(stack.faults.startups)
    scale_outs = len(stack.autoscaler.startups) if stack.autoscaler is not None else 0
    cell.started_wall_ns = time.time_ns()
    scale_t0 = time.monotonic()
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
            jobs=probe.jobs,
            phones=config.users,
        )
        controller.start()
    canary = Canary(
        cell.transport,
        {role: url for role, url in stack.endpoints().items() if role in stack.client_roles},
        timing,
        client_options(config),
        stack.database_url,
        cell.started_wall_ns / 1e9,
        plan_job(JobSpec(shape=config.job, seed=config.seed, time_scale=timing.time_scale)).duration_s,
    )
    canary.start()
    t0 = time.monotonic()
    stopping = False
    generator: list[int] = []
    sampler = CpuSampler(lambda: cell_processes(stack, generator)).__enter__()
    try:
        on_collected = view.cell_started(plan.transport, plan.profile, plan.expected_sessions)
        cell.complete = drive_cell(plan, config.locust_workers, log_dir, on_collected, generator.extend)
    except KeyboardInterrupt:
        stopping = True
        raise
    finally:
        with deferred():
            report = canary.stop()
            cell.canary_probes, cell.canary_foreign_events = report.probes, report.foreign_events
            with contextlib.suppress(OSError):
                (log_dir / f"canary-{cell_name(cell.transport, profile.name)}.log").write_text(
                    f"victim {canary.victim}\n" + "".join(f"{note}\n" for note in report.notes)
                )
            cell.seconds = time.monotonic() - t0
            sampler.stop()
            cell.cpu, cell.machine_cpu = sampler.series(), sampler.machine()
            if controller is not None:
                cell.windows = controller.stop()
                cell.chaos_errors = list(controller.errors)
            if canary.error:
                cell.chaos_errors.append(f"canary: {canary.error}")
            probe.close()
            cold = measured(COLD_START, timing.cold_start_s, stack.faults.startups[startups:])
            scale_out = measured(
                SCALE_OUT_START,
                timing.cold_start_s,
                stack.autoscaler.startups[scale_outs:] if stack.autoscaler is not None else [],
            )
            cell.timers = [t for t in (cold, scale_out) if t is not None]
            cell.meters = meter_delta(before, stack.meters())
            cell.instances = stack.instance_counts(scale_t0)
            if profile.conditions is not None:  # the whole cell ran on the faulty deployment
                cell.windows.append(
                    FaultWindow(
                        kind=f"server {profile.name}",
                        start_wall_ns=cell.started_wall_ns,
                        end_wall_ns=time.time_ns(),
                    )
                )
            if redeploy and not stopping:  # a stack about to close keeps the timing it has
                stack.reconfigure(
                    conditions=ServerConditions(), **{k: getattr(config.timing, k) for k in profile.timing}
                )


def with_billing_timing(config: RunConfig, book: PriceBook) -> RunConfig:
    """The timing with the price table's scale-down idle time: the services meter instance lives by it."""
    idle = book.value("cloud_run.idle_tail_s")
    return config.model_copy(update={"timing": config.timing.model_copy(update={"scale_down_idle_s": idle})})


def cell_processes(stack: Stack, generator: list[int]) -> list[Target]:
    """What a cell's CPU is spent in: Locust (with its agents), every live instance, Postgres, the
    services' fronts (they run in this supervisor process, only when scaling out) and the bundled
    chaos proxy every phone's bytes cross: a proxy pegged at a core would be the cell's bottleneck
    as surely as a pegged service (a real Toxiproxy at ``--toxiproxy-url`` is not ours to sample)."""
    targets = [Target("generator", "locust", pid, children=True) for pid in generator]
    if stack.autoscaler is not None:
        targets.append(Target("front", "supervisor", os.getpid()))
    proxy = stack.chaos_process
    if proxy is not None and proxy.poll() is None:
        targets.append(Target("chaos", "chaos-proxy", proxy.pid))
    for role, service in stack.services.items():
        targets += [Target(role, instance.name, instance.pid) for instance in service.live()]
    if stack.postgres is not None and stack.postgres.process is not None:
        targets.append(Target("postgres", "postgres", stack.postgres.process.pid, children=True))
    return targets


def client_options(config: RunConfig) -> dict[str, str]:
    """What every watcher of the run is told (``ClientSettings.options``)."""
    return {**config.client_options, "browser_phones": str(config.browser_phones)}


@dataclass(frozen=True)
class Prepared:
    """A run's configuration checked before anything starts (``run --parallel`` children too)."""

    #: The user's configuration, with the price table's scale-down idle time.
    config: RunConfig
    book: PriceBook
    profiles: list[Profile]

    def summary(
        self,
        *,
        run_id: str,
        complete: bool,
        interrupted: bool,
        started: float,
        cells: list[CellSummary],
    ) -> Summary:
        """The run's ``summary.json``: this configuration, where it ran, and ``cells`` in order."""
        return build_summary(
            provenance=provenance(),
            config=self.config.model_dump(mode="json"),
            profiles={p.name: p.model_dump(mode="json", by_alias=True) for p in self.profiles},
            run_id=run_id,
            complete=complete,
            interrupted=interrupted,
            timing=RunTiming(started_at=started, seconds=round(time.time() - started, 3)),
            cells=cells,
            book=self.book,
        )


def prepare(config: RunConfig) -> Prepared:
    """Transports, their optional parts, the price table, the profiles: ConfigError before anything starts."""
    options = client_options(config)
    for name in config.transports:
        entry, variant = resolve(name)
        if problem := entry.missing(variant, options):
            raise ConfigError(f"--transports {name}: {problem}")
    book = load_prices(config.prices)
    return Prepared(with_billing_timing(config, book), book, [get_profile(p) for p in config.profiles])


def execute(config: RunConfig, view: RunView, *, report: bool = True) -> RunOutcome:
    """Run the matrix and write its folder; ``report=False`` leaves out ``report.md``/``.html`` (a
    ``run --parallel`` part: the parent draws one report of the whole run, and drawing this part's
    would take CPU from the parts still measuring)."""
    prepared = prepare(config)
    config, book, profiles = prepared.config, prepared.book, prepared.profiles
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
    records: dict[tuple[str, str], list[SessionRecord]] = {}
    truth: dict[str, JobTruth] = {}

    settings = StackSettings(
        run_dir=out,
        timing=config.timing,
        database_url=config.database_url,
        worker_instances=config.worker_instances,
        worker_concurrency=config.worker_concurrency,
        api_concurrency=config.api_concurrency if config.autoscale else 1000,
        autoscale=config.autoscale,
        max_instances=config.max_instances,
        toxiproxy_url=config.toxiproxy_url,
        transports=config.transports,
        token_secret=config.token_secret,
        limits=Limits.for_load(config.users, config.jobs_per_user, config.spawn_rate),
        cors_origins=config.cors_origins,
    )
    view.run_started(run_id, config)
    with Stack(settings) as stack:
        view.stack_up(stack.endpoints(), embedded_database=stack.postgres is not None)
        if stack.control is not None:
            validate_against(stack.control, profiles)
        try:
            with view.cells():
                for transport in config.transports:
                    for profile in profiles:
                        cell = CellResult(
                            transport, profile.name, raw / f"{cell_name(transport, profile.name)}.jsonl"
                        )
                        cells.append(cell)
                        run_cell(stack, config, profile, cell, run_id, log_dir, view)
        except KeyboardInterrupt:
            interrupted = True
            view.interrupted()
        finally:
            # A stop signal while reading the results and stopping the stack marks the run
            # interrupted instead of losing what was measured.
            with held() as late:
                for cell in cells:
                    records[(cell.transport, cell.profile)] = read_records(cell.sessions_path)
                ids = [
                    i for recs in records.values() for r in recs for i in [r.job_id, *r.extra_job_ids] if i
                ]
                truth = read_truth(stack.database_url, ids)
                stack.close()
            if late.received and not interrupted:
                interrupted = True
                view.interrupted(late=True)

    all_sessions: list[SessionRow] = []
    all_events: list[EventRow] = []
    summary_cells: list[CellSummary] = []
    for cell in cells:
        entry, variant = resolve(cell.transport)
        scored = score_cell(
            cell,
            records.get((cell.transport, cell.profile), []),
            truth,
            config.timing.time_scale,
            book=book,
            declared_context=entry.context_for(variant),
        )
        summary_cells.append(scored.summary)
        all_sessions.extend(scored.sessions)
        all_events.extend(scored.events)

    complete = run_complete(cells, len(config.transports) * len(profiles), interrupted)
    summary = prepared.summary(
        run_id=run_id, complete=complete, interrupted=interrupted, started=started, cells=summary_cells
    )
    write_tables(out, all_sessions, all_events)
    write_summary(out, summary)
    if report:
        render_run(out, summary, all_sessions, all_events)
    return RunOutcome(out=out, summary=summary, complete=complete, interrupted=interrupted, logs=str(log_dir))
