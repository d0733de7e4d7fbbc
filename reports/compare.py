"""Two runs side by side: per cell, what moved, by how much, and whether it is outside the noise.

``progressbench compare BASE NEW`` (and ``report --baseline BASE``) hands
this module both runs' summaries and raw tables; it answers with a
:class:`Comparison` and renders it as Markdown and as self-contained HTML.

Each metric says which way is better and how its change is decided, always by
:mod:`progressbench.reports.uncertainty`'s rule: the 95 % interval of the
*difference* (new − base) must exclude zero. For a share of sessions (terminal
ratio, sessions with a silent stall or whose progress went back) that interval
is Newcombe's, built from the two runs' Wilson intervals; for the delivery
ratio, per-session counts and percentiles it is a seeded bootstrap of the
difference that resamples whole *sessions* in each run (a session's events are
not independent draws: a dropped stream loses a run of them), and it needs at
least ``uncertainty.SMALL_N`` sessions with values in each run (a bootstrap of
a handful is far too narrow) — below that the move is *not tested*. A metric
whose raw rows are missing (a bare ``summary.json`` as the base) is shown with
its change but *not tested*; nothing is called a regression without evidence.
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
from progressbench.reports.uncertainty import (
    SMALL_N,
    Change,
    Interval,
    Proportion,
    cluster_percentile_change,
    cluster_ratio_change,
    percentile_change,
    ratio_change,
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


#: The change of a metric between two cells (base, new), higher better or not; None when a
#: run lacks what it needs (raw rows, values): then the move is shown but not tested.
Measure = Callable[[CellData, CellData, bool], Change | None]


@dataclass(frozen=True)
class Metric:
    name: str
    better: Better
    #: How a value is written: "ratio", "count", "ms", "s", "usd".
    unit: str
    measure: Measure
    #: The value when no change can be measured (a bare summary): shown, not tested.
    plain: Callable[[CellSummary], float | None]
    #: Decided by a bootstrap, which needs :data:`~progressbench.reports.uncertainty.SMALL_N`
    #: sessions in each run; Newcombe's interval (shares of sessions) holds at any n.
    bootstrap: bool = True


@dataclass(frozen=True)
class Move:
    metric: Metric
    base: float | None
    new: float | None
    direction: Direction
    note: str = ""
    #: How it was measured: the interval of the difference and each run's interval.
    change: Change | None = None

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.new is None else self.new - self.base

    @property
    def significant(self) -> bool:
        return self.direction in ("better", "worse")

    @property
    def base_interval(self) -> Interval | None:
        return None if self.change is None else self.change.base_interval

    @property
    def new_interval(self) -> Interval | None:
        return None if self.change is None else self.change.new_interval

    @property
    def difference(self) -> Interval | None:
        """The 95 % interval of new − base the verdict was read from."""
        c = self.change
        return None if c is None or c.low is None or c.high is None else (c.low, c.high)


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


def _share(count: Callable[[CellSummary], float | None]) -> Measure:
    """A count of sessions (terminal, ``silent_stalls``) out of the cell's sessions: Newcombe."""

    def measure(base: CellData, new: CellData, higher: bool) -> Change | None:
        shares = []
        for cell in (base, new):
            value = count(cell.summary)
            if value is None:
                return None
            shares.append(Proportion(round(value), cell.summary.sessions))
        return ratio_change(shares[0], shares[1], higher_is_better=higher)

    return measure


def _session_count(field_name: str) -> Callable[[CellSummary], float | None]:
    def count(cell: CellSummary) -> float | None:
        value = cell.lookup(field_name)
        return float(value) if isinstance(value, int | float) else None

    return count


def _terminal_count(cell: CellSummary) -> float | None:
    return None if cell.terminal_ratio is None else cell.terminal_ratio * cell.sessions


def _share_plain(field_name: str) -> Callable[[CellSummary], float | None]:
    def plain(cell: CellSummary) -> float | None:
        value = cell.lookup(field_name)
        return value / cell.sessions if isinstance(value, int | float) and cell.sessions else None

    return plain


def _pairs(cell: CellData, numerator: str, denominator: str | None) -> tuple[list[float], list[float]] | None:
    """Per session, ``numerator`` over ``denominator`` (1 each without one: a mean per session)."""
    frame = cell.sessions
    if frame.empty or numerator not in frame or (denominator is not None and denominator not in frame):
        return None
    top = frame[numerator].fillna(0).astype(float).to_list()
    bottom = [1.0] * len(top) if denominator is None else frame[denominator].astype(float).to_list()
    return top, bottom


def _per_session(numerator: str, denominator: str | None = None) -> Measure:
    """A ratio of sums over sessions (delivery), or a mean per session: session bootstrap."""

    def measure(base: CellData, new: CellData, higher: bool) -> Change | None:
        b, n = _pairs(base, numerator, denominator), _pairs(new, numerator, denominator)
        return None if b is None or n is None else cluster_ratio_change(b, n, higher_is_better=higher)

    return measure


def _latency_groups(cell: CellData) -> list[list[float]] | None:
    frame = cell.events
    if frame.empty or "latency_ms" not in frame:
        return None
    rows = frame[(~frame["duplicate"].astype(bool)) & frame["latency_ms"].notna()]
    return [g.to_list() for _, g in rows.groupby("session_id", sort=False)["latency_ms"]]


def _resume_groups(cell: CellData) -> list[list[float]] | None:
    frame = cell.sessions
    if frame.empty or "resume_ms" not in frame:
        return None
    return [
        [float(v) for v in str(text).split(";") if v]
        for text in frame["resume_ms"].fillna("")
        if str(text) not in ("", "nan")
    ]


def _grouped(groups: Callable[[CellData], list[list[float]] | None], q: float) -> Measure:
    """A percentile of values a session has many of (latency, resume): session bootstrap."""

    def measure(base: CellData, new: CellData, higher: bool) -> Change | None:
        b, n = groups(base), groups(new)
        return None if b is None or n is None else cluster_percentile_change(b, n, q, higher_is_better=higher)

    return measure


def _session_values(column: str, q: float) -> Measure:
    """A percentile of one value per session (time to result): bootstrap of the sessions."""

    def measure(base: CellData, new: CellData, higher: bool) -> Change | None:
        b, n = base.sessions, new.sessions
        if b.empty or n.empty or column not in b or column not in n:
            return None
        return percentile_change(
            b[column].dropna().astype(float).to_list(),
            n[column].dropna().astype(float).to_list(),
            q,
            higher_is_better=higher,
        )

    return measure


def _untested(_base: CellData, _new: CellData, _higher: bool) -> Change | None:
    return None


def _field(name: str) -> Callable[[CellSummary], float | None]:
    def plain(cell: CellSummary) -> float | None:
        value = cell.lookup(name)
        return float(value) if isinstance(value, int | float) else None

    return plain


METRICS: tuple[Metric, ...] = (
    Metric("terminal ratio", "higher", "ratio", _share(_terminal_count), _field("terminal_ratio"), False),
    Metric(
        "delivery ratio",
        "higher",
        "ratio",
        _per_session("events_received", "events_expected"),
        _field("delivery_ratio"),
    ),
    Metric(
        "sessions with a silent stall",
        "lower",
        "ratio",
        _share(_session_count("silent_stalls")),
        _share_plain("silent_stalls"),
        False,
    ),
    Metric(
        "sessions whose progress went back",
        "lower",
        "ratio",
        _share(_session_count("progress_regressions")),
        _share_plain("progress_regressions"),
        False,
    ),
    Metric("lost events / session", "lower", "count", _per_session("lost"), _share_plain("lost")),
    Metric(
        "duplicates shown / session",
        "lower",
        "count",
        _per_session("duplicates"),
        _share_plain("duplicates"),
    ),
    Metric("latency p50", "lower", "ms", _grouped(_latency_groups, 50), _field("latency_ms.p50")),
    Metric("latency p95", "lower", "ms", _grouped(_latency_groups, 95), _field("latency_ms.p95")),
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
    Metric("resume time p50", "lower", "ms", _grouped(_resume_groups, 50), _field("resume_ms.p50")),
    Metric("$ / 1k jobs", "lower", "usd", _untested, _field("cost_usd_per_1k_jobs")),
)

FOREIGN = Metric("foreign events", "lower", "count", _untested, _field("foreign_events"))


def _move(metric: Metric, base: CellData, new: CellData) -> Move | None:
    change = metric.measure(base, new, metric.better == "higher")
    if change is not None and change.delta is None:
        change = None  # no values on one side: fall back to the summaries' values, untested
    b_val = change.base if change is not None else metric.plain(base.summary)
    n_val = change.new if change is not None else metric.plain(new.summary)
    if b_val is None and n_val is None:
        return None
    if b_val is None or n_val is None:
        return Move(metric, b_val, n_val, "no data")
    if metric is FOREIGN:
        if n_val > 0 and b_val == 0:
            return Move(metric, b_val, n_val, "worse", "must be 0: any is a regression")
        if n_val == 0 and b_val > 0:
            return Move(metric, b_val, n_val, "better")
        return Move(metric, b_val, n_val, "no change" if n_val == b_val else "not tested")
    if math.isclose(n_val, b_val, rel_tol=1e-9, abs_tol=1e-12):
        return Move(metric, b_val, n_val, "no change", change=change)
    if metric.unit in ("ms", "s") and (base.summary.saturated or new.summary.saturated):
        # the intervals hold the sessions' spread, not how loaded the machine was in each run
        note = "a run of this cell was saturated: its durations measured the machine"
        return Move(metric, b_val, n_val, "not tested", note, change)
    if change is None:
        if metric.unit == "usd":
            note = "no interval: a single measurement"
        elif base.sessions.empty or new.sessions.empty:
            note = "no interval: raw rows missing"
        else:
            note = "no interval: no raw values in one run"
        return Move(metric, b_val, n_val, "not tested", note)
    if metric.bootstrap and change.small:
        note = f"fewer than {SMALL_N} sessions in a run: too few to resample"
        return Move(metric, b_val, n_val, "not tested", note, change)
    if change.significant:
        direction: Direction = "better" if change.direction == "better" else "worse"
        return Move(metric, b_val, n_val, direction, change=change)
    return Move(metric, b_val, n_val, "within noise", change=change)


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
    text = _signed(delta, unit)
    if unit != "ratio" and move.base and move.new is not None:
        text += f" (×{move.new / move.base:.2g})"
    return text


def _signed(value: float, unit: str) -> str:
    return ("+" if value > 0 else "−" if value < 0 else "±") + fmt(abs(value), unit)


def interval_text(interval: Interval | None, unit: str, signed: bool = False) -> str:
    if interval is None:
        return ""
    low, high = (_signed(v, unit) if signed else fmt(v, unit) for v in interval)
    return f"[{low} – {high}]"


def sentence(cell: CellDiff, move: Move) -> str:
    """One plain sentence for a significant move, evidence included."""
    unit = move.metric.unit
    evidence = ""
    if move.difference is not None and move.significant:
        evidence = (
            f"; 95 % interval of the difference {interval_text(move.difference, unit, signed=True)} "
            "excludes 0"
        )
    elif move.note:
        evidence = f"; {move.note}"
    return (
        f"{cell.label}: {move.metric.name} {fmt(move.base, unit)} → {fmt(move.new, unit)} "
        f"({change_text(move)}), {move.direction}{evidence}"
    )


RULE_TEXT = (
    "A change is called better or worse only when the 95 % interval of the difference (new − base) "
    "excludes 0; otherwise it is within noise. For shares of sessions (terminal, silent stalls, "
    "progress going back) that interval is Newcombe's, built from the two runs' Wilson intervals. "
    "For the delivery ratio, per-session counts and percentiles it is a seeded bootstrap (1000 "
    "resamples per run) of the difference that resamples whole sessions (a session's events are not "
    f"independent), tested only with at least {SMALL_N} sessions with values in each run. Each run's "
    "own 95 % interval is shown beside its value; two intervals may overlap while the difference is "
    "still outside the noise. Foreign events must be 0: any is a regression. Durations of a cell "
    "saturated in either run (it measured the machine) are not tested. Cost has no interval (one "
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
            "| metric | base [95 % interval] | new [95 % interval] | change [95 % interval] | verdict |",
            "|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(_md(text) for text in _row(m)) + " |" for m in cell.moves]
        lines.append("")
    lines += ["## How significance is decided", "", RULE_TEXT, ""]
    return "\n".join(lines)


def _row(move: Move) -> tuple[str, str, str, str, str]:
    """A move as table cells: metric, base [interval], new [interval], change [interval], verdict."""
    unit = move.metric.unit
    return (
        move.metric.name,
        f"{fmt(move.base, unit)} {interval_text(move.base_interval, unit)}".strip(),
        f"{fmt(move.new, unit)} {interval_text(move.new_interval, unit)}".strip(),
        f"{change_text(move)} {interval_text(move.difference, unit, signed=True)}".strip(),
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
            head = (
                "metric",
                "base [95 % interval]",
                "new [95 % interval]",
                "change [95 % interval]",
                "verdict",
            )
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
