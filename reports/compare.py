"""Two runs side by side: per cell, what moved, by how much, and whether it is outside the noise.

``progressbench compare BASE NEW`` (and ``report --baseline BASE``) hands
this module both runs' summaries and raw tables; it answers with a
:class:`Comparison` and renders it as Markdown and as self-contained HTML.

Each metric says which way is better and how its uncertainty is measured
(``significance.py`` holds the rule: 95 % intervals, Wilson for ratios over
sessions, a session bootstrap for percentiles, means and the delivery ratio;
a change is significant when the intervals do not overlap). A metric whose
raw rows are missing (a bare ``summary.json`` as the base) is shown with its
change but *not tested*; nothing is called a regression without evidence.
Foreign events are the one exception: the contract says they must be 0, so
any rise from 0 is a regression whatever the sample. Durations of a cell that
was saturated in either run (``saturated``: it measured the machine's
capacity) are not tested: an interval holds the spread between sessions, not
how loaded the machine was in each run.

Pure: frames and summaries in, text out. Reading folders is the app's.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from progressbench.reports.significance import (
    MIN_SESSIONS,
    Interval,
    bootstrap_mean,
    bootstrap_percentile,
    bootstrap_ratio,
    significant,
    wilson,
)

from progressbench.core.summary import CellSummary, Summary

#: Fewer sessions than this in either run: the cell is marked as a small sample.
SMALL_SAMPLE = 20

Better = Literal["higher", "lower"]
Direction = Literal["better", "worse", "within noise", "not tested", "no change", "no data"]


@dataclass(frozen=True)
class CellData:
    """One cell of one run: its summary entry and its rows of ``sessions.csv`` / ``events.csv``."""

    summary: CellSummary
    #: Empty when the run's folder has no sessions.csv (a bare summary.json).
    sessions: pd.DataFrame
    events: pd.DataFrame


@dataclass(frozen=True)
class RunData:
    summary: Summary
    sessions: pd.DataFrame
    events: pd.DataFrame
    #: How the run is named in the report (its folder).
    label: str

    def cell(self, summary: CellSummary) -> CellData:
        key = (summary.transport, summary.profile)
        return CellData(summary, _rows(self.sessions, key), _rows(self.events, key))


def _rows(frame: pd.DataFrame, key: tuple[str, str]) -> pd.DataFrame:
    if frame.empty or "transport" not in frame or "profile" not in frame:
        return frame.iloc[0:0]
    return frame[(frame["transport"] == key[0]) & (frame["profile"] == key[1])]


@dataclass(frozen=True)
class Metric:
    name: str
    better: Better
    #: How a value is written: "ratio", "count", "ms", "s", "usd".
    unit: str
    measure: Callable[[CellData], Interval | None]
    #: The value when no interval can be had (a bare summary): shown, not tested.
    plain: Callable[[CellSummary], float | None]


@dataclass(frozen=True)
class Move:
    metric: Metric
    base: float | None
    new: float | None
    base_interval: Interval | None
    new_interval: Interval | None
    direction: Direction
    note: str = ""

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.new is None else self.new - self.base

    @property
    def significant(self) -> bool:
        return self.direction in ("better", "worse")


CellStatus = Literal["regressed", "improved", "mixed", "unchanged", "only in base", "only in new"]


@dataclass(frozen=True)
class CellDiff:
    transport: str
    profile: str
    base_sessions: int
    new_sessions: int
    moves: list[Move] = field(default_factory=list)
    only: Literal["base", "new"] | None = None

    @property
    def label(self) -> str:
        return f"{self.transport} × {self.profile}"

    @property
    def small_sample(self) -> bool:
        return self.only is None and min(self.base_sessions, self.new_sessions) < SMALL_SAMPLE

    @property
    def status(self) -> CellStatus:
        if self.only is not None:
            return "only in base" if self.only == "base" else "only in new"
        worse = any(m.direction == "worse" for m in self.moves)
        better = any(m.direction == "better" for m in self.moves)
        return (
            "mixed" if worse and better else "regressed" if worse else "improved" if better else "unchanged"
        )


@dataclass(frozen=True)
class Comparison:
    base: RunData
    new: RunData
    cells: list[CellDiff]
    warnings: list[str]

    def count(self, status: CellStatus) -> int:
        return sum(c.status == status for c in self.cells)

    @property
    def regressed(self) -> list[CellDiff]:
        return [c for c in self.cells if c.status in ("regressed", "mixed")]


# --------------------------------------------------------------------------- metrics


def _share(field_name: str) -> Callable[[CellData], Interval | None]:
    """A count of sessions (``silent_stalls``) as a share of the cell's sessions, Wilson interval."""

    def measure(cell: CellData) -> Interval | None:
        value = cell.summary.lookup(field_name)
        n = cell.summary.sessions
        return wilson(int(value), n) if isinstance(value, int | float) else None

    return measure


def _share_plain(field_name: str) -> Callable[[CellSummary], float | None]:
    def plain(cell: CellSummary) -> float | None:
        value = cell.lookup(field_name)
        return value / cell.sessions if isinstance(value, int | float) and cell.sessions else None

    return plain


def _terminal(cell: CellData) -> Interval | None:
    ratio, n = cell.summary.terminal_ratio, cell.summary.sessions
    return None if ratio is None else wilson(round(ratio * n), n)


def _delivery(cell: CellData) -> Interval | None:
    frame = cell.sessions
    if frame.empty or "events_expected" not in frame:
        return None
    return bootstrap_ratio(frame["events_received"].to_list(), frame["events_expected"].to_list())


def _per_session(column: str) -> Callable[[CellData], Interval | None]:
    def measure(cell: CellData) -> Interval | None:
        frame = cell.sessions
        if frame.empty or column not in frame:
            return None
        return bootstrap_mean(frame[column].fillna(0).to_list())

    return measure


def _per_session_plain(field_name: str) -> Callable[[CellSummary], float | None]:
    def plain(cell: CellSummary) -> float | None:
        value = cell.lookup(field_name)
        return value / cell.sessions if isinstance(value, int | float) and cell.sessions else None

    return plain


def _latency(q: float) -> Callable[[CellData], Interval | None]:
    def measure(cell: CellData) -> Interval | None:
        frame = cell.events
        if frame.empty or "latency_ms" not in frame:
            return None
        rows = frame[(~frame["duplicate"].astype(bool)) & frame["latency_ms"].notna()]
        clusters = [g.to_list() for _, g in rows.groupby("session_id", sort=False)["latency_ms"]]
        return bootstrap_percentile(clusters, q)

    return measure


def _session_values(column: str, q: float) -> Callable[[CellData], Interval | None]:
    def measure(cell: CellData) -> Interval | None:
        frame = cell.sessions
        if frame.empty or column not in frame:
            return None
        return bootstrap_percentile([[float(v)] for v in frame[column].dropna()], q)

    return measure


def _resume(q: float) -> Callable[[CellData], Interval | None]:
    def measure(cell: CellData) -> Interval | None:
        frame = cell.sessions
        if frame.empty or "resume_ms" not in frame:
            return None
        clusters = [
            [float(v) for v in str(text).split(";") if v]
            for text in frame["resume_ms"].fillna("")
            if str(text) not in ("", "nan")
        ]
        return bootstrap_percentile(clusters, q)

    return measure


def _untested(_cell: CellData) -> Interval | None:
    return None


def _field(name: str) -> Callable[[CellSummary], float | None]:
    def plain(cell: CellSummary) -> float | None:
        value = cell.lookup(name)
        return float(value) if isinstance(value, int | float) else None

    return plain


METRICS: tuple[Metric, ...] = (
    Metric("terminal ratio", "higher", "ratio", _terminal, _field("terminal_ratio")),
    Metric("delivery ratio", "higher", "ratio", _delivery, _field("delivery_ratio")),
    Metric(
        "sessions with a silent stall",
        "lower",
        "ratio",
        _share("silent_stalls"),
        _share_plain("silent_stalls"),
    ),
    Metric(
        "sessions whose progress went back",
        "lower",
        "ratio",
        _share("progress_regressions"),
        _share_plain("progress_regressions"),
    ),
    Metric("lost events / session", "lower", "count", _per_session("lost"), _per_session_plain("lost")),
    Metric(
        "duplicates shown / session",
        "lower",
        "count",
        _per_session("duplicates"),
        _per_session_plain("duplicates"),
    ),
    Metric("latency p50", "lower", "ms", _latency(50), _field("latency_ms.p50")),
    Metric("latency p95", "lower", "ms", _latency(95), _field("latency_ms.p95")),
    Metric(
        "time to result p50",
        "lower",
        "s",
        _session_values("time_to_result_s", 50),
        _field("time_to_result_s.p50"),
    ),
    Metric(
        "time to result p95",
        "lower",
        "s",
        _session_values("time_to_result_s", 95),
        _field("time_to_result_s.p95"),
    ),
    Metric("resume time p50", "lower", "ms", _resume(50), _field("resume_ms.p50")),
    Metric("$ / 1k jobs", "lower", "usd", _untested, _field("cost_usd_per_1k_jobs")),
)

FOREIGN = Metric("foreign events", "lower", "count", _untested, _field("foreign_events"))


def _move(metric: Metric, base: CellData, new: CellData) -> Move | None:
    b_int, n_int = metric.measure(base), metric.measure(new)
    b_val = b_int.value if b_int is not None else metric.plain(base.summary)
    n_val = n_int.value if n_int is not None else metric.plain(new.summary)
    if b_val is None and n_val is None:
        return None
    if b_val is None or n_val is None:
        return Move(metric, b_val, n_val, b_int, n_int, "no data")
    up = n_val > b_val
    good = up == (metric.better == "higher")
    if metric is FOREIGN:
        if n_val > 0 and b_val == 0:
            return Move(metric, b_val, n_val, None, None, "worse", "must be 0: any is a regression")
        if n_val == 0 and b_val > 0:
            return Move(metric, b_val, n_val, None, None, "better")
        return Move(metric, b_val, n_val, None, None, "no change" if n_val == b_val else "not tested")
    if math.isclose(n_val, b_val, rel_tol=1e-9, abs_tol=1e-12):
        return Move(metric, b_val, n_val, b_int, n_int, "no change")
    if metric.unit in ("ms", "s") and (base.summary.saturated or new.summary.saturated):
        # the intervals hold the sessions' spread, not how loaded the machine was in each run
        note = "a run of this cell was saturated: its durations measured the machine"
        return Move(metric, b_val, n_val, b_int, n_int, "not tested", note)
    if b_int is None or n_int is None:
        if metric.unit == "usd":
            note = "no interval: a single measurement"
        elif base.sessions.empty or new.sessions.empty:
            note = "no interval: raw rows missing"
        else:
            note = f"no interval: fewer than {MIN_SESSIONS} sessions"
        return Move(metric, b_val, n_val, b_int, n_int, "not tested", note)
    if significant(b_int, n_int):
        return Move(metric, b_val, n_val, b_int, n_int, "better" if good else "worse")
    return Move(metric, b_val, n_val, b_int, n_int, "within noise")


def compare_runs(base: RunData, new: RunData) -> Comparison:
    """Every cell of either run, matched by (transport, profile), with its moves."""
    warnings: list[str] = []
    if base.summary.machine.node != new.summary.machine.node:
        warnings.append(
            f"the runs come from different machines ({base.summary.machine.node} and "
            f"{new.summary.machine.node}): latency and time comparisons may measure the machines"
        )
    b_scale, n_scale = _scale(base.summary), _scale(new.summary)
    if b_scale != n_scale:
        warnings.append(
            f"time scales differ ({b_scale:g} and {n_scale:g}): durations are real-time equivalents, "
            "but timers that cannot follow the scale distort them differently"
        )
    for run in (base, new):
        if not run.summary.complete:
            warnings.append(f"{run.label} is partial (interrupted or cut short)")
        if run.sessions.empty:
            warnings.append(
                f"{run.label} has no sessions.csv: only its summary's values are shown, not tested"
            )
    base_cells = {(c.transport, c.profile): c for c in base.summary.cells}
    new_cells = {(c.transport, c.profile): c for c in new.summary.cells}
    diffs: list[CellDiff] = []
    for key in dict.fromkeys([*new_cells, *base_cells]):
        b, n = base_cells.get(key), new_cells.get(key)
        if b is None or n is None:
            only: Literal["base", "new"] = "base" if n is None else "new"
            present = b if b is not None else n
            assert present is not None
            diffs.append(
                CellDiff(
                    key[0], key[1], present.sessions if b else 0, present.sessions if n else 0, only=only
                )
            )
            continue
        b_data, n_data = base.cell(b), new.cell(n)
        moves = [m for metric in (*METRICS, FOREIGN) if (m := _move(metric, b_data, n_data)) is not None]
        diffs.append(CellDiff(key[0], key[1], b.sessions, n.sessions, moves))
    return Comparison(base, new, diffs, warnings)


def _scale(summary: Summary) -> float:
    timing = summary.config.get("timing")
    scale = timing.get("time_scale") if isinstance(timing, dict) else None
    return float(scale) if isinstance(scale, int | float) and scale > 0 else 1.0


# --------------------------------------------------------------------------- text


def fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "usd":
        return f"${value:.4g}"
    if unit in ("ms", "s"):
        return f"{value:,.0f} {unit}" if abs(value) >= 100 else f"{value:.3g} {unit}"
    return f"{value:.3g}"


def change_text(move: Move) -> str:
    """``−0.200``; for counts and durations also the factor, ``+12 ms (×1.3)``."""
    delta = move.delta
    if delta is None:
        return "–"
    unit = move.metric.unit
    sign = "+" if delta > 0 else "−" if delta < 0 else "±"
    text = sign + fmt(abs(delta), unit)
    if unit != "ratio" and move.base and move.new is not None:
        text += f" (×{move.new / move.base:.2g})"
    return text


def interval_text(interval: Interval | None, unit: str) -> str:
    if interval is None:
        return ""
    return f"[{fmt(interval.low, unit)} – {fmt(interval.high, unit)}]"


def sentence(cell: CellDiff, move: Move) -> str:
    """One plain sentence for a significant move, evidence included."""
    unit = move.metric.unit
    evidence = ""
    if move.base_interval is not None and move.new_interval is not None:
        evidence = (
            f"; 95 % intervals {interval_text(move.base_interval, unit)} and "
            f"{interval_text(move.new_interval, unit)} do not overlap"
        )
    elif move.note:
        evidence = f"; {move.note}"
    return (
        f"{cell.label}: {move.metric.name} {fmt(move.base, unit)} → {fmt(move.new, unit)} "
        f"({change_text(move)}), {move.direction}{evidence}"
    )


RULE_TEXT = (
    "A change is called better or worse only when it is outside the noise: ratios over sessions "
    "(terminal, silent stalls, progress going back) get a Wilson 95 % interval; the delivery ratio, "
    "per-session counts and percentiles get a 95 % bootstrap interval that resamples sessions "
    f"(a session's events are not independent), given at least {MIN_SESSIONS} sessions; a change is "
    "significant when the two runs' intervals do not overlap. Foreign events must be 0: any is a "
    "regression. Durations of a cell saturated in either run (it measured the machine) are not "
    "tested. Cost has no interval (one "
    f"measurement of the meters); cells with fewer than {SMALL_SAMPLE} sessions in either run are "
    "marked as small samples. Durations are real-time equivalents."
)


def headline(comparison: Comparison) -> str:
    n = len(comparison.cells)
    parts = [f"{comparison.count(s)} {s}" for s in ("regressed", "mixed", "improved", "unchanged")]
    parts += [f"{comparison.count(s)} {s}" for s in ("only in base", "only in new") if comparison.count(s)]
    return (
        f"{n} cell{'' if n == 1 else 's'} compared: "
        + ", ".join(parts)
        + " (unchanged: every difference within the noise)."
    )


def _run_line(run: RunData) -> str:
    s = run.summary
    return (
        f"run {s.run_id} at {s.created_at}, commit {(s.commit or 'unknown')[:12]}, "
        f"on {s.machine.node} ({s.machine.cpus} CPUs)"
    )


def _md(value: object) -> str:
    text = " ".join(str(value).split())
    return "".join("\\" + ch if ch in "\\`*_[]<>|#!~&" else ch for ch in text)


def markdown(comparison: Comparison) -> str:
    lines = [
        f"# Comparison: {_md(comparison.new.label)} against {_md(comparison.base.label)}",
        "",
        f"- base: {_md(_run_line(comparison.base))}",
        f"- new: {_md(_run_line(comparison.new))}",
        "",
        f"**{headline(comparison)}**",
        "",
    ]
    lines += [f"> warning: {_md(w)}" for w in comparison.warnings]
    if comparison.warnings:
        lines.append("")
    lines += ["## What moved beyond the noise", ""]
    moved = [(c, m) for c in comparison.cells for m in c.moves if m.significant]
    lines += [f"- {_md(sentence(c, m))}" for c, m in moved] or [
        "- nothing: every difference is within the noise"
    ]
    lines += ["", "## Every cell", ""]
    for cell in comparison.cells:
        small = " (small sample)" if cell.small_sample else ""
        lines += [f"### {_md(cell.label)}: {cell.status}{small}", ""]
        if cell.only is not None:
            lines += [f"Measured only in the {cell.only} run.", ""]
            continue
        lines += [
            f"Sessions: {cell.base_sessions} → {cell.new_sessions}.",
            "",
            "| metric | base [95 % interval] | new [95 % interval] | change | verdict |",
            "|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(_md(text) for text in _row(m)) + " |" for m in cell.moves]
        lines.append("")
    lines += ["## How significance is decided", "", RULE_TEXT, ""]
    return "\n".join(lines)


def _row(move: Move) -> tuple[str, str, str, str, str]:
    """A move as table cells: metric, base [interval], new [interval], change, verdict."""
    unit = move.metric.unit
    return (
        move.metric.name,
        f"{fmt(move.base, unit)} {interval_text(move.base_interval, unit)}".strip(),
        f"{fmt(move.new, unit)} {interval_text(move.new_interval, unit)}".strip(),
        change_text(move),
        move.direction + (f" — {move.note}" if move.note else ""),
    )


_COLOURS = {
    "worse": "#fbe3e3",
    "better": "#e2f4e2",
    "regressed": "#c62828",
    "mixed": "#c66a00",
    "improved": "#2e7d32",
}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:75em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left} th{background:#f3f3f3}
.meta{color:#666;font-size:13px} .warn{background:#fff4d6;padding:4px 8px} li{margin:2px 0;padding:2px 6px}
"""


def _tr(cells: Sequence[str], colour: str | None = None) -> str:
    style = f' style="background:{colour}"' if colour else ""
    return f"<tr{style}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_report(comparison: Comparison) -> str:
    """The comparison as one self-contained page; its first screen is the verdict and what moved."""
    esc = html.escape
    moved = [(c, m) for c in comparison.cells for m in c.moves if m.significant]
    items = "".join(
        f'<li style="background:{_COLOURS[m.direction]}">{esc(sentence(c, m))}</li>' for c, m in moved
    )
    warnings = "".join(f'<p class="warn">warning: {esc(w)}</p>' for w in comparison.warnings)
    overview = [
        _tr(
            [
                esc(c.label),
                f'<b style="color:{_COLOURS.get(c.status, "#222")}">{esc(c.status)}</b>'
                + (" (small sample)" if c.small_sample else ""),
                str(c.base_sessions),
                str(c.new_sessions),
                str(sum(m.direction == "worse" for m in c.moves)),
                str(sum(m.direction == "better" for m in c.moves)),
            ]
        )
        for c in comparison.cells
    ]
    details = []
    for cell in comparison.cells:
        small = " (small sample)" if cell.small_sample else ""
        details.append(f"<h3>{esc(cell.label)}: {esc(cell.status)}{small}</h3>")
        if cell.only is None:
            rows = [_tr([esc(text) for text in _row(m)], _COLOURS.get(m.direction)) for m in cell.moves]
            head = ("metric", "base [95 % interval]", "new [95 % interval]", "change", "verdict")
            details.append(_table(head, rows))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>progressbench comparison</title>
<style>{_STYLE}</style></head><body>
<h1>Comparison: {esc(comparison.new.label)} against {esc(comparison.base.label)}</h1>
<p class="meta">base: {esc(_run_line(comparison.base))}<br>new: {esc(_run_line(comparison.new))}</p>
<p><b>{esc(headline(comparison))}</b></p>
{warnings}
<h2>What moved beyond the noise</h2>
<ul>{items or "<li>nothing: every difference is within the noise</li>"}</ul>
{_table(("cell", "status", "sessions base", "sessions new", "worse", "better"), overview)}
<h2>Every cell</h2>
{"".join(details)}
<h2>How significance is decided</h2>
<p class="meta">{esc(RULE_TEXT)}</p>
</body></html>
"""
