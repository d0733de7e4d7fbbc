"""The console's tables: results cells, gate verdicts, stack endpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from progressbench.core.summary import CellSummary
from progressbench.reports.gate import Verdict

if TYPE_CHECKING:
    from progressbench.app.bench_all import Figure

#: Columns of the console summary when cells are rows (the full set is in report.md).
COMPACT = (
    "delivery",
    "lost",
    "dup",
    "terminal",
    "lat p50 real ms",
    "lat p95 real ms",
    "disc",
    "resume p50 real ms",
    "result p50 real s",
    "stalls",
    "foreign",
    "dup exec",
    "stuck",
    "$ / 1k jobs",
)


def cells_table(cells: Sequence[CellSummary]) -> Table:
    """Few cells: one column per cell, every metric. Many: one row per cell, key metrics."""
    from progressbench.reports.render import COLUMNS, cell_table

    rows = cell_table(cells)
    labels = [label for _, label in COLUMNS]
    table = Table()
    if len(rows) <= 4:
        table.add_column("metric")
        for row in rows:
            table.add_column(f"{row[0]}\n{row[1]}", justify="right")
        for index, label in enumerate(labels[2:], start=2):
            table.add_row(label, *(row[index] for row in rows))
    else:
        picked = [labels.index(label) for label in COMPACT]
        table.add_column("transport")
        table.add_column("profile")
        for index in picked:
            table.add_column(labels[index], justify="right")
        for row in rows:
            table.add_row(row[0], row[1], *(row[i] for i in picked))
    return table


def _actual(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def verdicts_table(title: str, verdicts: Sequence[Verdict]) -> Table:
    table = Table(title=title)
    for col in ("", "cell", "rule", "actual", "note"):
        table.add_column(col)
    for v in verdicts:
        table.add_row(_status(v), v.cell, v.rule, _actual(v.actual), v.note)
    return table


def _status(verdict: Verdict) -> str:
    """ok, FAIL, or a dim dash for a rule no cell of the run matched (it judged nothing)."""
    if not verdict.ok:
        return "[red]FAIL[/]"
    return "[dim]–[/]" if verdict.actual is None and verdict.note == "not run" else "[green]ok[/]"


def endpoints_table(endpoints: Mapping[str, str], database_url: str) -> Table:
    table = Table(title="progressbench stack")
    table.add_column("service")
    table.add_column("endpoint")
    for role, url in endpoints.items():
        table.add_row(role, url)
    table.add_row("database", database_url)
    return table


def bench_table(figures: Sequence[Figure]) -> Table:
    """One row per benchmark figure: value, anchor, ratio, and whether it meets the anchor."""
    table = Table(title="benchmarks against their anchors")
    for column in ("figure", "value", "anchor", "ratio", "meets", "source"):
        table.add_column(column, justify="left" if column in ("figure", "source") else "right")
    for f in figures:
        sign = "≤" if f.better == "lower" else "≥"
        meets = {True: "[green]yes[/]", False: "[red]no[/]", None: "–"}[f.meets]
        table.add_row(
            f.name,
            "–" if f.value is None else f"{f.value:.4g} {f.unit}",
            "–" if f.anchor is None else f"{sign} {f.anchor:g} {f.unit}",
            "–" if f.ratio is None else f"{f.ratio:.2f}",
            meets,
            f.source or "",
        )
    return table
