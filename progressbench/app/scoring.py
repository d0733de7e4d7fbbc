"""Scoring: the cells' raw records and the store's truth in, the rows and ``summary.json`` out.

Pure code: no files, sockets or clocks. The runner collects (records per
cell, the truth it read while the store was up, what it knows about the run
and where it ran); this module decides what goes into each number, so a
finished run and an interrupted one are scored by the same lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from progressbench.app.cell_result import CellResult
from progressbench.core.billed import billing_for
from progressbench.core.events import SessionRecord
from progressbench.core.ledger import EventRow, JobTruth, SessionRow, account, summarize
from progressbench.core.summary import (
    SCHEMA_VERSION,
    CellCost,
    CellSummary,
    CostPoint,
    MachineInfo,
    RunTiming,
    Summary,
)
from progressbench.reports.cell_cost import cell_cost, curve_rows, planned_span, window_of
from progressbench.reports.prices import PriceBook, load_prices, prices_as_of
from progressbench.transports import resolve


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
    book: PriceBook | None = None,
) -> ScoredCell:
    """One cell: each session against the store (with the faults that hit it), then the aggregates."""
    rows: list[SessionRow] = []
    events: list[EventRow] = []
    for record in records:
        record = record.model_copy(update={"fault_windows": cell.windows_for(record)})
        row, evs = account(record, truth)
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
    summary = CellSummary(
        **dict(aggregates),
        cost=cost,
        cost_breakdown_usd=cell_usd,
        complete=cell.complete,
        seconds=round(cell.seconds, 3),
        fault_windows=cell.describe_windows(),
        chaos_errors=list(cell.chaos_errors),
    )
    return ScoredCell(summary, rows, events)


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
