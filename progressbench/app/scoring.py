"""Scoring: the cells' raw records and the store's truth in, the rows and ``summary.json`` out.

Pure code: no files, sockets or clocks. The runner collects (records per
cell, the truth it read while the store was up, what it knows about the run
and where it ran); this module decides what goes into each number, so a
finished run and an interrupted one are scored by the same lines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from progressbench.app.cell_result import CellResult
from progressbench.app.cpu_sampler import INTERVAL_S as SAMPLE_INTERVAL_S
from progressbench.chaos.profiles import get_profile
from progressbench.core.billed import billing_for
from progressbench.core.errors import ProgressbenchError
from progressbench.core.events import SessionRecord
from progressbench.core.ledger import EventRow, JobTruth, SessionRow, account, summarize
from progressbench.core.saturation import JobTiming, judge
from progressbench.core.summary import (
    SCHEMA_VERSION,
    UNREPORTED,
    CellCost,
    CellSummary,
    CostPoint,
    Distortion,
    InstanceSpan,
    MachineInfo,
    RunTiming,
    Saturation,
    Summary,
)
from progressbench.core.throttle import throttled
from progressbench.core.timers import Distortion as CoreDistortion
from progressbench.core.timers import distortions, order_flips
from progressbench.reports.cell_cost import cell_cost, curve_rows, planned_span, window_of
from progressbench.reports.prices import PriceBook, load_prices, prices_as_of
from progressbench.transports.registry import resolve


@dataclass(frozen=True)
class Provenance:
    """Where and with what a run ran: read at the edge (:func:`progressbench.app.results.provenance`)."""

    progressbench: str
    created_at: str
    commit: str | None
    machine: MachineInfo
    versions: dict[str, str | None]


@dataclass(frozen=True)
class ScoredCell:
    summary: CellSummary
    sessions: list[SessionRow]
    events: list[EventRow]


def price_cell(
    cell: CellResult, records: Sequence[SessionRecord], jobs: int, time_scale: float, book: PriceBook
) -> tuple[CellCost, dict[str, float]]:
    """The cell's ``cost`` and its own dollars by bill line, from the transport's declared components.

    The run's load is the cell's jobs over the phones' planned job time
    (:func:`~progressbench.reports.cell_cost.planned_span`); without plans,
    over the span its sessions covered (first start to last end).
    """
    transport, variant = resolve(cell.transport)
    measured = window_of([(r.started_wall_ns, r.ended_wall_ns) for r in records], cell.seconds)
    planned = planned_span([(r.user_index, r.planned_job_s) for r in records])
    window = planned or measured
    basis = (
        f"the phones' planned job time; the sessions took {measured / time_scale:.0f} s"
        if planned
        else "the span its sessions covered"
    )
    priced = cell_cost(
        billing_for(transport.billing, variant),
        cell.meters,
        jobs=jobs,
        window_s=window,
        time_scale=time_scale,
        book=book,
        window_basis=basis,
    )
    cost = CellCost(
        usd_per_1k_jobs=priced.usd_per_1k_jobs,
        breakdown=priced.breakdown,
        prices_as_of=priced.prices_as_of,
        billing_assumptions=list(priced.billing_assumptions),
        jobs_per_hour=priced.jobs_per_hour,
        curve=[CostPoint(**row) for row in curve_rows(priced.curve, book.month_s)],
    )
    return cost, priced.cell_usd


def score_cell(
    cell: CellResult,
    records: Sequence[SessionRecord],
    truth: Mapping[str, JobTruth],
    time_scale: float,
    declared_context: str | None = None,
    book: PriceBook | None = None,
) -> ScoredCell:
    """One cell: each session against the store (with the faults that hit it), then the aggregates.

    ``declared_context``: where the cell's transport means its work to run (its registry entry).
    """
    rows: list[SessionRow] = []
    events: list[EventRow] = []
    for record in records:
        record = record.model_copy(update={"fault_windows": cell.windows_for(record)})
        row, evs = account(record, truth, declared_context)
        rows.append(row)
        events.extend(evs)
    jobs = len({r.job_id for r in rows if r.job_id})
    flat_meters = {f"{svc}.{k}": v for svc, m in cell.meters.items() for k, v in m.items()}
    cost, cell_usd = price_cell(cell, records, jobs, time_scale, book or load_prices())
    aggregates = summarize(
        cell.transport,
        cell.profile,
        rows,
        events,
        meters=flat_meters,
        cost_usd_per_1k_jobs=cost.usd_per_1k_jobs,
    )
    saturation = saturation_of(cell, records, truth)
    fields = dict(aggregates)
    # What the canary got is foreign by definition: it owns no job (RESULTS.md: foreign_events).
    fields["foreign_events"] = aggregates.foreign_events + cell.canary_foreign_events
    fields["canary_probes"] = cell.canary_probes
    if cell.planned_sessions and (unreported := cell.planned_sessions - len(records)) > 0:
        fields["session_outcomes"] = {**aggregates.session_outcomes, UNREPORTED: unreported}
    distorted = cell_distortions(cell, time_scale)
    summary = CellSummary(
        **fields,
        cost=cost,
        cost_breakdown_usd=cell_usd,
        complete=cell.complete,
        sessions_planned=cell.planned_sessions or None,
        seconds=round(cell.seconds, 3),
        fault_windows=cell.describe_windows(),
        chaos_errors=list(cell.chaos_errors),
        distortions=distorted,
        verdict_depends_on=verdict_timers(cell, records, distorted, time_scale),
        saturated=bool(saturation and saturation.reasons),
        saturation=saturation,
        instances={
            role: InstanceSpan(
                max=c.max,
                mean=round(c.mean, 3),
                instance_seconds=round(c.instance_seconds, 3),
                timeline=list(c.timeline),
            )
            for role, c in cell.instances.items()
        },
    )
    return ScoredCell(summary, rows, events)


def cell_distortions(cell: CellResult, time_scale: float) -> list[Distortion]:
    """The cell's timers that could not follow the time scale: its transport's, and those measured."""
    transport, _ = resolve(cell.transport)
    found = distortions([*transport.timers, *cell.timers], time_scale)
    return [Distortion(timer=d.timer, real_s=d.real_s, effective_real_s=d.effective_real_s) for d in found]


def verdict_timers(
    cell: CellResult, records: Sequence[SessionRecord], found: Sequence[Distortion], time_scale: float
) -> list[str]:
    """The distortions whose timer lands on the other side of the cell's fault windows or job length."""
    spans: dict[str, float] = {}
    with contextlib.suppress(ProgressbenchError):
        spans.update(get_profile(cell.profile).spans())
    for window in cell.describe_windows():
        what = f"the {window.kind} window"
        spans[what] = max(spans.get(what, 0.0), round(window.duration_s / time_scale, 1))
    planned = sorted(r.planned_job_s for r in records if r.planned_job_s)
    if planned:
        spans["the job's planned length"] = round(planned[len(planned) // 2] / time_scale, 1)
    flips = order_flips((CoreDistortion(d.timer, d.real_s, d.effective_real_s) for d in found), spans.items())
    return flips


def job_timings(records: Sequence[SessionRecord], truth: Mapping[str, JobTruth]) -> list[JobTiming]:
    """Jobs that ran exactly once, start to finish, beside their plan (both in compressed seconds).

    A job that ran twice (a restart, a redelivery) or belongs to a session
    with several executions measures the fault, not the host's pace; so does a
    job whose platform throttled its CPU by design (``polling:in-instance``).
    """
    timings: list[JobTiming] = []
    for record in records:
        job = truth.get(record.job_id or "")
        if job is None or record.extra_job_ids or not record.planned_job_s or job.ran_twice:
            continue
        if any(throttled(c) for c in job.contexts):
            continue
        if job.status != "done" or job.started_wall_ns is None or job.finished_wall_ns is None:
            continue
        ran_s = (job.finished_wall_ns - job.started_wall_ns) / 1e9
        timings.append(JobTiming(ran_s=ran_s, planned_s=record.planned_job_s))
    return timings


def saturation_of(
    cell: CellResult, records: Sequence[SessionRecord], truth: Mapping[str, JobTruth]
) -> Saturation | None:
    """The cell's saturation verdict; None when nothing was sampled (a cell cut short before Locust ran)."""
    if not cell.cpu and not cell.machine_cpu:
        return None
    verdict = judge(cell.cpu, cell.machine_cpu, job_timings(records, truth), interval_s=SAMPLE_INTERVAL_S)
    return Saturation(
        generator_cpu=verdict.generator_cpu,
        service_cpu=verdict.service_cpu,
        job_slowdown=verdict.job_slowdown,
        machine_cpu=verdict.machine_cpu,
        machine_cpu_peak=verdict.machine_cpu_peak,
        peak_cpu=verdict.peak_cpu,
        reasons=verdict.reasons,
    )


def run_complete(cells: Sequence[CellResult], planned: int, interrupted: bool) -> bool:
    """Every planned cell ran and collected every session, and nobody stopped the run."""
    return not interrupted and len(cells) == planned and all(c.complete for c in cells)


def build_summary(
    *,
    provenance: Provenance,
    config: dict[str, Any],
    profiles: dict[str, Any],
    run_id: str,
    complete: bool,
    interrupted: bool,
    timing: RunTiming,
    cells: Sequence[CellSummary],
    book: PriceBook | None = None,
) -> Summary:
    return Summary(
        schema_version=SCHEMA_VERSION,
        progressbench=provenance.progressbench,
        created_at=provenance.created_at,
        commit=provenance.commit,
        machine=provenance.machine,
        versions=provenance.versions,
        prices_as_of=prices_as_of(book or load_prices()),
        config=config,
        profiles=profiles,
        run_id=run_id,
        complete=complete,
        interrupted=interrupted,
        timing=timing,
        cells=list(cells),
    )
