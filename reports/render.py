"""Render a results folder: ``report.md`` and a self-contained ``report.html``.

Percentiles come from the raw rows (``events.csv``, ``sessions.csv``) each
time; plots are PNGs embedded as base64 so the HTML file travels alone.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from progressbench.reports.cost_report import cost_html, cost_markdown
from progressbench.reports.figures import (
    commit_times,
    paths_plot,
    plain_log,
    png,
    result_time_plot,
    resume_time_plot,
    timelines_plot,
)
from progressbench.reports.narrative import cost_line
from progressbench.reports.sections import (
    INTERVALS_HEAD,
    SMALL_NOTE,
    VERDICT_HEAD,
    intervals_rows,
    verdict_blocks,
    verdict_markdown,
)

from progressbench.core.events import SessionRecord
from progressbench.core.saturation import PEAK_WINDOW_S
from progressbench.core.summary import CellSummary, Summary

Records = Mapping[tuple[str, str], Sequence[SessionRecord]]

COLUMNS: tuple[tuple[str, str], ...] = (
    ("transport", "transport"),
    ("profile", "profile"),
    ("sessions", "sessions"),
    ("delivery_ratio", "delivery"),
    ("lost", "lost"),
    ("coalesced", "coalesced"),
    ("duplicates", "dup"),
    ("out_of_order", "ooo"),
    ("terminal_ratio", "terminal"),
    ("gave_up_at_submit", "gave up"),
    ("latency_ms.p50", "lat p50 real ms"),
    ("latency_ms.p95", "lat p95 real ms"),
    ("latency_ms.p99", "lat p99 real ms"),
    ("disconnects", "disc"),
    ("resumes", "resumes"),
    ("resume_ms.p50", "resume p50 real ms"),
    ("time_to_result_s.p50", "result p50 real s"),
    ("silent_stalls", "stalls"),
    ("foreign_events", "foreign"),
    ("duplicate_executions", "dup exec"),
    ("stuck_jobs", "stuck"),
    ("cost_usd_per_1k_jobs", "$ / 1k jobs"),
    ("cost.jobs_per_hour", "… at jobs/h"),
)


#: How every duration of the report is meant: the run compressed time, the report does not.
TIME_NOTE = (
    "Durations are real-time equivalents: measured in this run, compressed by time scale {scale:g}, "
    "and divided by it (sessions.csv and events.csv keep the measured values as *_raw columns). "
    "A timer that could not follow the scale is listed under distortions."
)


def _items(lines: Iterable[str]) -> str:
    return "".join(f"<li>{html.escape(line.removeprefix('- ').replace('**', ''))}</li>" for line in lines)


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _sessions(cell: CellSummary) -> str:
    """Recorded sessions, and the plan's count when some are missing ("872/1000")."""
    planned = cell.sessions_planned
    return (
        f"{cell.sessions}/{planned}"
        if planned is not None and planned != cell.sessions
        else str(cell.sessions)
    )


def cell_table(cells: Sequence[CellSummary]) -> list[list[str]]:
    return [[_sessions(c) if key == "sessions" else _fmt(c.lookup(key)) for key, _ in COLUMNS] for c in cells]


PATHS = ("live", "replay", "refetch", "snapshot", "poll")
PATHS_HEAD = ("transport", "profile", *PATHS, "wasted work s (real time)")


def paths_table(cells: Sequence[CellSummary]) -> list[list[str]]:
    """Per cell: unique events by how they first arrived, and the execution seconds nobody kept."""
    return [
        [c.transport, c.profile, *(_fmt(c.delivery_paths.get(p, 0)) for p in PATHS), _fmt(c.wasted_work_s)]
        for c in cells
    ]


#: Characters with a meaning in Markdown (inline or in a table); CommonMark lets any ASCII
#: punctuation be escaped with a backslash, so these render as themselves.
_MD_SPECIAL = frozenset("\\`*_[]<>|#!~&")


def md(value: object) -> str:
    """Text from a results file, safe inside a Markdown line or table cell.

    Transport, profile, finding and error texts come from the user's summary.json
    (issue #13, probe 13): line breaks become spaces and Markdown punctuation is
    backslash-escaped, so a value can neither add rows, links or HTML nor break the table.
    """
    text = " ".join(_fmt(value).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


def markdown(
    summary: Summary,
    sessions: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    intervals: list[list[str]] | None = None,
) -> str:
    """report.md: the verdict, then the cost comparison, then the details (tables, intervals, notes).

    ``intervals`` are :func:`intervals_rows` when the caller has them (their bootstraps
    are the slowest part of the text; both reports show the same rows)."""
    cells = summary.cells
    if intervals is None:
        intervals = intervals_rows(
            cells, _empty() if sessions is None else sessions, _empty() if events is None else events
        )
    head = [label for _, label in COLUMNS]
    lines = [
        "# progressbench report",
        "",
        f"Run {md(summary.run_id)} at {md(summary.created_at)} on commit "
        f"{md((summary.commit or 'unknown')[:12])}; "
        f"{'complete' if summary.complete else '**partial** (interrupted or cut short)'}. "
        f"{TIME_NOTE.format(scale=_scale(summary)).split(':')[0]}.",
        "",
    ]
    lines += verdict_markdown(cells, md, sessions)
    lines += cost_markdown(summary, md(line) if (line := cost_line(cells)) else None)
    lines += [
        "",
        "## Details",
        "",
        "### Every share and percentile with its 95 % interval",
        "",
        "| " + " | ".join(INTERVALS_HEAD) + " |",
        "|" + "|".join("---" for _ in INTERVALS_HEAD) + "|",
    ]
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in intervals]
    lines += [
        "",
        md(SMALL_NOTE),
        "",
        "### All figures per cell",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in cell_table(cells)]
    if saturated := [md(c.label) for c in cells if c.saturated]:
        lines += [
            "",
            f"**Saturated cells: {', '.join(saturated)}** — they measured this machine's capacity, "
            "not the pattern (figures under Capacity below).",
        ]
    config = summary.config
    lines += [
        "",
        f"Phones: {md(config.get('users'))} × {md(config.get('jobs_per_user'))} jobs; time scale "
        f"{md(_timing(config).get('time_scale'))}; seed {md(config.get('seed'))}.",
        "Latency is commit (store) to receive (phone), same host clock. "
        "Costs: see the cost section above (each at a stated load).",
        "",
        TIME_NOTE.format(scale=_scale(summary)),
        "",
        "### Resume outcomes per cell",
        "",
        "| " + " | ".join(RESUME_HEAD) + " |",
        "|" + "|".join("---" for _ in RESUME_HEAD) + "|",
    ]
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in resume_rows(cells)]
    lines += [
        "",
        "### Delivery paths and wasted work per cell",
        "",
        "| " + " | ".join(PATHS_HEAD) + " |",
        "|" + "|".join("---" for _ in PATHS_HEAD) + "|",
    ]
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in paths_table(cells)]
    lines += ["", "### Findings the clients reported (sessions)", ""]
    lines += [findings_text(c, md) for c in cells]
    lines += ["", "### Fault windows per cell", ""]
    lines += [fault_windows_text(c, _scale(summary), md) for c in cells]
    lines += ["", "### Timers that could not follow the time scale (distortions)", ""]
    lines += [distortions_text(c, md) for c in cells]
    lines += ["", "### Capacity: did each cell measure the pattern or the machine?", ""]
    lines += [capacity_text(c, md) for c in cells]
    return "\n".join(lines) + "\n"


def _plain(value: object) -> str:
    return _fmt(value)


def _timing(config: Mapping[str, Any]) -> Mapping[str, Any]:
    timing = config.get("timing")
    return timing if isinstance(timing, Mapping) else {}


def _scale(summary: Summary) -> float:
    scale = _timing(summary.config).get("time_scale")
    return float(scale) if isinstance(scale, int | float) and scale > 0 else 1.0


def _peak_groups(groups: dict[str, float], esc: Callable[[object], str]) -> str:
    """The groups that had the machine in its busiest stretch, busiest first (the top four)."""
    top = sorted(groups.items(), key=lambda kv: -kv[1])[:4]
    return "; " + ", ".join(f"{esc(g)} {v:g}% of a core" for g, v in top) if top else ""


def capacity_text(cell: CellSummary, esc: Callable[[object], str] = _plain) -> str:
    """One line per cell: did it measure the pattern or the machine, with the figures."""
    head = f"- **{esc(cell.label)}**: "
    sat = cell.saturation
    if sat is None:
        return head + "not sampled"
    services = ", ".join(f"{esc(role)} {cpu:g}%" for role, cpu in sat.service_cpu.items()) or "–"
    figures = (
        f"generator {_fmt(sat.generator_cpu)}% of a core; services {services}; "
        f"machine {_fmt(sat.machine_cpu)}% of all cores"
        + (
            f" (busiest {PEAK_WINDOW_S:g} s: {sat.machine_cpu_peak:g}%{_peak_groups(sat.peak_cpu, esc)})"
            if sat.machine_cpu_peak is not None
            else ""
        )
        + f"; job slowdown {_fmt(sat.job_slowdown)}×"
    )
    figures += instances_text(cell, esc)
    if cell.saturated:
        return (
            head + "**saturated: this cell measured capacity, not the pattern** "
            f"({esc('; '.join(sat.reasons))}). {figures}"
        )
    return head + "within capacity. " + figures


def instances_text(cell: CellSummary, esc: Callable[[object], str] = _plain) -> str:
    """The scaled services' instances over the cell ("" without scale-out)."""
    if not cell.instances:
        return ""
    parts = [
        f"{esc(role)} max {span.max}, mean {span.mean:.2f}, {span.instance_seconds:.1f} instance-s"
        for role, span in cell.instances.items()
    ]
    return "; instances: " + "; ".join(parts)


def distortions_text(cell: CellSummary, esc: Callable[[object], str] = _plain) -> str:
    """One line per cell: each timer that kept its own length, real value → value in effect (real s)."""
    head = f"- **{esc(cell.label)}**: "
    if not cell.distortions:
        return head + "none"
    text = head + "; ".join(
        f"{esc(d.timer)} {d.real_s:g} s → {d.effective_real_s:g} s" for d in cell.distortions
    )
    if cell.verdict_depends_on:
        text += ". **Its verdict depends on the compression**: " + esc("; ".join(cell.verdict_depends_on))
    return text


def fault_windows_text(
    cell: CellSummary, time_scale: float = 1.0, esc: Callable[[object], str] = _plain
) -> str:
    """One line per cell: each fault, the phone cell it hit, and when (real s after the cell began).

    ``fault_windows`` holds the run's own (compressed) seconds; the text says their real equivalent.
    ``esc`` escapes the texts that come from the results file (:func:`md` for Markdown).
    """
    windows = cell.fault_windows
    head = f"- **{esc(cell.label)}**: "
    if not windows:
        return head + "no faults"
    parts = [
        f"{esc(w.kind)} on {'the stack' if w.cell is None else 'phone cell ' + str(w.cell)} "
        f"at {w.start_s / time_scale:.4g} real s for {w.duration_s / time_scale:.4g} real s"
        for w in windows
    ]
    errors = cell.chaos_errors
    shown = "; ".join(esc(e) for e in errors)
    return head + "; ".join(parts) + (f" — chaos errors: {shown}" if errors else "")


def _png(fig: Any) -> str:
    return png(fig)


def latency_plot(events: pd.DataFrame) -> str | None:
    """Latency ECDFs: one panel per transport, one line per profile (comparable at a glance)."""
    data = events[(~events["duplicate"]) & events["latency_ms"].notna()] if not events.empty else events
    if data.empty:
        return None
    transports = list(dict.fromkeys(data["transport"]))
    cols = min(len(transports), 3)
    rows = (len(transports) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharex=True)
    for ax, transport in zip(axes.flat, transports, strict=False):
        for profile, group in data[data["transport"] == transport].groupby("profile", sort=False):
            values = group["latency_ms"].clip(lower=0.01).sort_values().to_numpy()
            ax.step(
                values, [(i + 1) / len(values) for i in range(len(values))], where="post", label=str(profile)
            )
        ax.set_xscale("log")
        plain_log(ax.xaxis)
        ax.set_title(transport, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(transports) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("commit → phone (real ms, log)")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of events")
    fig.suptitle("Delivery latency per transport and profile (ECDF)", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def delivery_plot(cells: Sequence[CellSummary]) -> str | None:
    """Delivery and terminal ratio as transport × profile heatmaps, each cell annotated."""
    if not cells:
        return None
    transports = list(dict.fromkeys(c.transport for c in cells))
    profiles = list(dict.fromkeys(c.profile for c in cells))
    width = max(5.0, 0.9 * len(profiles) + 2.0)
    height = max(2.0, 0.42 * len(transports) + 1.2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, height), squeeze=False)
    for ax, (key, title) in zip(
        axes[0], (("delivery_ratio", "delivery ratio"), ("terminal_ratio", "terminal ratio")), strict=True
    ):
        grid = [[float("nan")] * len(profiles) for _ in transports]
        for c in cells:
            value = c.lookup(key)
            if isinstance(value, int | float):
                grid[transports.index(c.transport)][profiles.index(c.profile)] = float(value)
        ax.imshow(
            grid, cmap=plt.get_cmap("RdYlGn").with_extremes(bad="#dddddd"), vmin=0.0, vmax=1.0, aspect="auto"
        )
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                ax.text(j, i, "–" if value != value else f"{value:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(profiles)), profiles, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(transports)), transports, fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.suptitle("What the phones learned (grey: nothing was committed)", fontsize=11)
    fig.tight_layout()
    return _png(fig)


RESUME_HEAD = (
    "transport",
    "profile",
    "replayed complete",
    "gap flagged",
    "silent gap",
    "duplicate replay",
    "restarted",
    "executions / intent (max)",
    "regressions",
)


def resume_rows(cells: Sequence[CellSummary]) -> list[list[str]]:
    """Per cell: reconnects by resume outcome, the most executions of one request, regressions."""
    rows = []
    for c in cells:
        o = c.resume_outcomes
        rows.append(
            [
                c.transport,
                c.profile,
                *(
                    str(v)
                    for v in (
                        o.replayed_complete,
                        o.gap_flagged,
                        o.silent_gap,
                        o.duplicate_replay,
                        o.restarted,
                    )
                ),
                _fmt(c.executions_per_intent.max),
                str(c.progress_regressions),
            ]
        )
    return rows


def findings_text(cell: CellSummary, esc: Callable[[object], str] = _plain) -> str:
    text = ", ".join(f"{esc(name)} × {n}" for name, n in sorted(cell.findings.items())) or "none"
    return f"- **{esc(cell.label)}**: {text}"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], klass: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    cls = f' class="{klass}"' if klass else ""
    return f'<div class="wide"><table{cls}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _img(data: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">' if data else ""


def verdict_html(cells: Sequence[CellSummary], sessions: pd.DataFrame | None = None) -> str:
    parts = [
        "<h2>Verdict: which pattern kept the user informed</h2>",
        '<p class="meta">Per fault profile, best first. <b>kept informed</b>: every session showed the result, '
        "no progress going backwards, no silent stall, no lost event; <b>left users uninformed</b>: fewer than "
        "80 % saw the result. Cells share a rank when they differ only within the noise.</p>",
    ]
    for profile, line, rows, notes in verdict_blocks(cells, sessions):
        parts.append(f'<h3>{html.escape(profile)}</h3><p class="line">{html.escape(line)}</p>')
        parts.append(_table(VERDICT_HEAD, rows, "verdict"))
        if notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append(f'<p class="meta">{html.escape(SMALL_NOTE)}</p>')
    return "\n".join(parts)


def html_report(
    summary: Summary,
    events: pd.DataFrame,
    sessions: pd.DataFrame | None = None,
    records: Records | None = None,
    intervals: list[list[str]] | None = None,
) -> str:
    """report.html: the verdict and the timelines first, then the cost comparison, then the details."""
    cells = summary.cells
    sessions = _empty() if sessions is None else sessions
    if intervals is None:
        intervals = intervals_rows(cells, sessions, events)
    scale = _scale(summary)
    status = "complete" if summary.complete else "PARTIAL (interrupted or cut short)"
    machine = summary.machine
    timelines = _img(timelines_plot(cells, records or {}, commit_times(events)), "session timelines")
    if not timelines and records:
        timelines = '<p class="meta">No session records to draw timelines from.</p>'
    distributions = "".join(
        _img(p, alt)
        for p, alt in (
            (result_time_plot(sessions), "time to result per transport and profile"),
            (resume_time_plot(sessions), "resume time per transport and profile"),
        )
    )
    other = "".join(
        _img(p, alt)
        for p, alt in (
            (paths_plot(cells), "delivery paths per transport"),
            (delivery_plot(cells), "delivery and terminal ratio heatmaps"),
            (latency_plot(events), "delivery latency ECDFs"),
        )
    )
    config = summary.config
    saturated = (
        f"<p><b>Saturated cells: {html.escape(', '.join(c.label for c in cells if c.saturated))}</b> — they "
        "measured this machine's capacity, not the pattern (figures under Capacity below).</p>"
        if any(c.saturated for c in cells)
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>progressbench report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}}
table{{border-collapse:collapse;font-size:13px;margin:.5em 0}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}
th{{background:#f3f3f3}} td:nth-child(-n+2){{text-align:left}} img{{display:block;margin:1em 0;max-width:100%}}
table.verdict td:nth-child(3){{text-align:left}} p.line{{font-size:15px;margin:.3em 0}}
.meta{{color:#666;font-size:13px}} h3{{margin-bottom:.2em}} .wide{{overflow-x:auto}}
</style></head><body>
<h1>progressbench report</h1>
<p class="meta">run {html.escape(summary.run_id)} · {html.escape(summary.created_at)} ·
commit {html.escape((summary.commit or "unknown")[:12])} · {status} ·
{html.escape(str(machine.cpus))} CPUs, Python {html.escape(machine.python)} ·
{html.escape(TIME_NOTE.format(scale=scale).split(":")[0])}</p>
{verdict_html(cells, sessions)}
{timelines}
{cost_html(summary, _png, cost_line(cells))}
<h2>Details</h2>
<h3>Every share and percentile with its 95 % interval</h3>
{_table(INTERVALS_HEAD, intervals)}
<p class="meta">{html.escape(SMALL_NOTE)}</p>
{distributions}
<h3>All figures per cell</h3>
{_table([label for _, label in COLUMNS], cell_table(cells))}
{saturated}
<p class="meta">Phones: {html.escape(_fmt(config.get("users")))} × {html.escape(_fmt(config.get("jobs_per_user")))} jobs;
time scale {html.escape(_fmt(_timing(config).get("time_scale")))}; seed {html.escape(_fmt(config.get("seed")))}.
Latency: store commit → phone receive (same host clock). delivery = unique events received /
events committed; terminal = sessions that learned the job's final state.</p>
<p class="meta">{html.escape(TIME_NOTE.format(scale=scale))}</p>
<h3>Resume outcomes per cell</h3>
{_table(RESUME_HEAD, resume_rows(cells))}
<h3>Delivery paths and wasted work per cell</h3>
{_table(PATHS_HEAD, paths_table(cells))}
{other}
<h3>Findings the clients reported (sessions)</h3>
<ul>{_items(findings_text(c) for c in cells)}</ul>
<h3>Fault windows per cell</h3>
<ul>{_items(fault_windows_text(c, scale) for c in cells)}</ul>
<h3>Timers that could not follow the time scale (distortions)</h3>
<ul>{_items(distortions_text(c) for c in cells)}</ul>
<h3>Capacity: did each cell measure the pattern or the machine?</h3>
<ul>{_items(capacity_text(c) for c in cells)}</ul>
</body></html>
"""


def write_reports(
    out: Path,
    summary: Summary,
    *,
    sessions: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    records: Records | None = None,
) -> None:
    """Write report.md and report.html of ``out`` (the HTML also draws from the raw ``records``)."""
    events = _empty() if events is None else events
    intervals = intervals_rows(summary.cells, _empty() if sessions is None else sessions, events)
    (out / "report.md").write_text(markdown(summary, sessions, events, intervals))
    (out / "report.html").write_text(html_report(summary, events, sessions, records, intervals))
