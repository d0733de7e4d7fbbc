"""The report's cost section: each cell's cost at a stated load, by component, and over load.

Reads only ``summary.json`` cells (their ``cost``), so a report re-rendered
from a results folder shows the same figures. Three views:

- a table of the run-load figure (and the load it is stated at), split by
  billed item;
- the cost curve at the standard loads, with and without free tiers;
- plots: a stacked bar by component per cell, and cost over load (log-log).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from progressbench.reports.cell_cost import by_item

from progressbench.core.summary import CellSummary, Summary

#: The curve loads the tables show (jobs per month); the plot shows every point.
TABLE_LOADS: tuple[float, ...] = (100, 10_000, 1_000_000, 100_000_000)


def _usd(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "0"
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _load(jobs: float) -> str:
    for factor, suffix in ((1e6, "M"), (1e3, "k")):
        if jobs >= factor:
            return f"{jobs / factor:g}{suffix}"
    return f"{jobs:g}"


def _priced(cells: Sequence[CellSummary]) -> list[CellSummary]:
    return [c for c in cells if c.cost is not None]


def items_of(cells: Sequence[CellSummary]) -> list[str]:
    """Billed items that cost something in some cell, in first-seen order (a $0 plan is left out)."""
    seen: dict[str, None] = {}
    for c in _priced(cells):
        assert c.cost is not None
        for item, usd in by_item(c.cost.breakdown).items():
            if usd != 0:
                seen.setdefault(item, None)
    return list(seen)


def _curve_value(cell: CellSummary, jobs_per_month: float, free_tiers: bool) -> float | None:
    assert cell.cost is not None
    for point in cell.cost.curve:
        if abs(point.jobs_per_month - jobs_per_month) <= 1e-6 * jobs_per_month:
            return (
                point.usd_per_1k_jobs_with_free_tiers
                if free_tiers
                else point.usd_per_1k_jobs_without_free_tiers
            )
    return None


def run_load_rows(cells: Sequence[CellSummary]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the run-load figure, its load, each item's share."""
    items = items_of(cells)
    head = ["transport", "profile", "load (jobs/h)", "$ / 1k jobs", *items]
    rows = []
    for c in _priced(cells):
        assert c.cost is not None
        shares = by_item(c.cost.breakdown)
        rows.append(
            [
                c.transport,
                c.profile,
                _usd(c.cost.jobs_per_hour),
                _usd(c.cost.usd_per_1k_jobs),
                *(_usd(shares.get(i)) for i in items),
            ]
        )
    return head, rows


def curve_table_rows(cells: Sequence[CellSummary]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: $ / 1k jobs at each table load, without | with free tiers."""
    head = ["transport", "profile", *(f"{_load(n)}/month" for n in TABLE_LOADS)]
    rows = []
    for c in _priced(cells):
        values = [
            f"{_usd(_curve_value(c, n, False))} \\| {_usd(_curve_value(c, n, True))}" for n in TABLE_LOADS
        ]
        rows.append([c.transport, c.profile, *values])
    return head, rows


#: How a cell's assumption names one of its components, or its load (``reports/cell_cost.py``).
COMPONENT_MARK = ": billed as "
LOAD_MARK = "run load: "


def assumptions(cells: Sequence[CellSummary]) -> list[str]:
    """Per transport, what bills each of its components and its cells' loads; then the rest, once each."""
    per_transport: dict[str, list[str]] = {}
    shared: dict[str, None] = {}
    for c in _priced(cells):
        assert c.cost is not None
        for line in c.cost.billing_assumptions:
            if COMPONENT_MARK in line.split(";", 1)[0] or line.startswith(LOAD_MARK):
                lines = per_transport.setdefault(c.transport, [])
                if line not in lines:
                    lines.append(line)
            else:
                shared.setdefault(line, None)
    return [f"{t}: " + " · ".join(lines) for t, lines in per_transport.items()] + list(shared)


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def cost_markdown(summary: Summary, lead: str | None = None) -> list[str]:
    """The cost section of ``report.md`` (empty when no cell was priced); ``lead`` opens it."""
    cells = _priced(summary.cells)
    if not cells:
        return []
    lines = [
        "",
        "## Cost per 1,000 jobs, at a stated load",
        "",
        *([lead, ""] if lead else []),
        f"Prices as of {summary.prices_as_of}. Each part is billed the way its platform bills it "
        "(see the assumptions below). The load is the cell's own: its jobs over the phones' planned job "
        "time, in real time. Without free tiers; the items are the bill's lines, plan fees included.",
        "",
        *_md_table(*run_load_rows(cells)),
        "",
        "Over load (without free tiers \\| with free tiers), from each cell's per-job usage:",
        "",
        *_md_table(*curve_table_rows(cells)),
        "",
        "Billing assumptions:",
        "",
        *(f"- {line}" for line in assumptions(cells)),
    ]
    return lines


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v.replace(chr(92), ''))}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def cost_html(summary: Summary, png: Any = None, lead: str | None = None) -> str:
    """The cost section of ``report.html``; ``png`` turns a matplotlib figure into base64 (plots).

    ``lead``, plain text, opens the section (the verdict's one-line cost comparison).
    """
    cells = _priced(summary.cells)
    if not cells:
        return ""
    plots = [p for p in (cost_plots(cells, png) if png is not None else []) if p]
    images = "".join(f'<img alt="cost plot" src="data:image/png;base64,{p}">' for p in plots)
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in assumptions(cells))
    return (
        "<h2>Cost per 1,000 jobs, at a stated load</h2>"
        + (f'<p class="line">{html.escape(lead)}</p>' if lead else "")
        + f'<p class="meta">Prices as of {html.escape(str(summary.prices_as_of))}; each cell at its own load '
        "(its jobs over the phones' planned job time, real time), without free tiers.</p>"
        + _html_table(*run_load_rows(cells))
        + '<p class="meta">Over load: without free tiers | with free tiers.</p>'
        + _html_table(*curve_table_rows(cells))
        + images
        + f"<details><summary>Billing assumptions</summary><ul>{notes}</ul></details>"
    )


def cost_plots(cells: Sequence[CellSummary], png: Any) -> list[str]:
    """A stacked bar by billed item per cell, and $ / 1k jobs over load (log-log), as base64 PNGs."""
    import matplotlib.pyplot as plt
    from progressbench.reports.figures import plain_log

    priced = _priced(cells)
    if not priced:
        return []
    items = items_of(priced)
    labels = [c.label for c in priced]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(priced) + 2), 3.6))
    bottoms = [0.0] * len(priced)
    for item in items:
        heights = []
        for c in priced:
            assert c.cost is not None
            heights.append(by_item(c.cost.breakdown).get(item, 0.0))
        ax.bar(labels, heights, bottom=bottoms, label=item)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_ylabel("$ / 1k jobs at the cell's own load")
    ax.set_title("Cost by billed component (without free tiers)", fontsize=10)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    bar = png(fig)

    fig, ax = plt.subplots(figsize=(8.5, 4.0))
    for c in priced:
        assert c.cost is not None
        curve = c.cost.curve
        paid = [(p.jobs_per_month, p.usd_per_1k_jobs_without_free_tiers) for p in curve]
        free = [(p.jobs_per_month, p.usd_per_1k_jobs_with_free_tiers) for p in curve]
        color = None
        for points, style, label in ((paid, "-", c.label), (free, ":", None)):
            shown = [(x, y) for x, y in points if y is not None and y > 0]
            if shown:
                (line,) = ax.plot(
                    *zip(*shown, strict=True), style, marker="o", markersize=3, label=label, color=color
                )
                color = line.get_color()
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log(ax.xaxis)
    plain_log(ax.yaxis)
    ax.set_xlabel("jobs per month")
    ax.set_ylabel("$ / 1k jobs")
    ax.set_title("Cost over load (solid: without free tiers, dotted: with)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # beside the plot: a 20-cell legend would hide the lines
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return [bar, png(fig)]
