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
from progressbench.core.events import SessionRecord
from progressbench.core.ledger import EventRow, JobTruth, SessionRow, account, summarize
from progressbench.core.summary import SCHEMA_VERSION, CellSummary, MachineInfo, RunTiming, Summary
from progressbench.reports.costs import PRICES_AS_OF, cost_breakdown, cost_per_1k_jobs


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


def score_cell(
    cell: CellResult, records: Sequence[SessionRecord], truth: Mapping[str, JobTruth], time_scale: float
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
    aggregates = summarize(
        cell.transport,
        cell.profile,
        rows,
        events,
        meters=flat_meters,
        cost_usd_per_1k_jobs=cost_per_1k_jobs(cell.meters, jobs, time_scale, cell_seconds=cell.seconds),
    )
    breakdown = cost_breakdown(cell.meters, time_scale, cell_seconds=cell.seconds)
    fields = dict(aggregates)
    # What the canary got is foreign by definition: it owns no job (RESULTS.md: foreign_events).
    fields["foreign_events"] = aggregates.foreign_events + cell.canary_foreign_events
    fields["canary_probes"] = cell.canary_probes
    summary = CellSummary(
        **fields,
        cost_breakdown_usd={k: round(v, 8) for k, v in breakdown.items()},
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
) -> Summary:
    return Summary(
        schema_version=SCHEMA_VERSION,
        progressbench=provenance.progressbench,
        created_at=provenance.created_at,
        commit=provenance.commit,
        machine=provenance.machine,
        versions=provenance.versions,
        prices_as_of=PRICES_AS_OF,
        config=config,
        profiles=profiles,
        run_id=run_id,
        complete=complete,
        interrupted=interrupted,
        timing=timing,
        cells=list(cells),
    )
