"""The verdict section and the intervals table, as rows of text for report.md and report.html.

The words come from :mod:`progressbench.reports.narrative`, the intervals from
:mod:`progressbench.reports.uncertainty`; this module only lays them out, so
both files show the same rows. ``esc`` escapes text from the results file for
the target format (Markdown or HTML).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
from progressbench.reports.figures import resume_values
from progressbench.reports.narrative import Standing, standings, summary_line
from progressbench.reports.uncertainty import (
    cluster_percentile_ci,
    cluster_ratio_ci,
    percentile_ci,
    small_sample,
    wilson,
)

from progressbench.core.summary import CellSummary

#: Marks a cell with fewer sessions than ``uncertainty.SMALL_N``.
SMALL_MARK = "†"
SMALL_NOTE = (
    f"{SMALL_MARK} fewer than 10 sessions: intervals are wide; read the numbers as hints. "
    "Parentheses hold 95 % intervals: Wilson for shares of sessions; a seeded bootstrap (1000 "
    "resamples) for percentiles, resampling whole sessions for values a session has many of "
    "(latency, resume time, delivery)."
)

VERDICT_HEAD = (
    "rank",
    "transport",
    "verdict",
    "result shown (95% CI)",
    "progress went back",
    "silent stalls",
    "time to result ÷ job time (median)",
)


def _pct(low: float, high: float) -> str:
    return f"{low:.0%}–{high:.0%}"


def verdict_row(s: Standing) -> list[str]:
    mark = SMALL_MARK if s.small else ""
    ttr = "–" if s.ttr_ratio is None else f"×{s.ttr_ratio:.2f}"
    return [
        f"{s.rank}",
        s.transport + mark,
        s.grade + (" (saturated)" if s.saturated else ""),
        f"{s.terminal}/{s.sessions} ({_pct(*s.terminal_ci)})",
        f"{s.regressions}/{s.sessions}",
        f"{s.stalls}/{s.sessions}",
        ttr,
    ]


def ttr_samples(sessions: pd.DataFrame) -> dict[tuple[str, str], list[float]]:
    """Per cell, each session's time to result over its job's planned time (``sessions.csv``)."""
    if sessions.empty or not {"transport", "profile", "time_to_result_ratio"} <= set(sessions.columns):
        return {}
    frame = sessions[["transport", "profile", "time_to_result_ratio"]].copy()
    frame["time_to_result_ratio"] = pd.to_numeric(frame["time_to_result_ratio"], errors="coerce")
    frame = frame.dropna()
    return {
        (str(t), str(p)): [float(v) for v in g["time_to_result_ratio"]]
        for (t, p), g in frame.groupby(["transport", "profile"], sort=False)
    }


def verdict_blocks(
    cells: Sequence[CellSummary], sessions: pd.DataFrame | None = None
) -> list[tuple[str, str, list[list[str]], list[str]]]:
    """Per profile: (profile, one-line summary, ranked rows, "transport: sentence; ..." notes)."""
    blocks = []
    samples = ttr_samples(sessions) if sessions is not None else None
    for profile, ranked in standings(cells, samples).items():
        notes = [f"{s.label}: " + "; ".join(s.sentences) + "." for s in ranked if s.sentences]
        blocks.append((profile, summary_line(profile, ranked), [verdict_row(s) for s in ranked], notes))
    return blocks


def verdict_markdown(
    cells: Sequence[CellSummary], esc: Callable[[object], str], sessions: pd.DataFrame | None = None
) -> list[str]:
    lines = [
        "## Verdict: which pattern kept the user informed",
        "",
        "Per fault profile, best first. A pattern *kept informed* when every session showed the "
        "result, with no progress going backwards, no silent stall and no lost event; it *left users "
        "uninformed* when fewer than 80 % saw the result. Cells share a rank when they differ only "
        "within the noise.",
    ]
    for profile, line, rows, notes in verdict_blocks(cells, sessions):
        lines += ["", f"### {esc(profile)}", "", esc(line), ""]
        lines += ["| " + " | ".join(VERDICT_HEAD) + " |", "|" + "|".join("---" for _ in VERDICT_HEAD) + "|"]
        lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
        if notes:
            lines += ["", *(f"- {esc(n)}" for n in notes)]
    lines += ["", SMALL_NOTE]
    return lines


# --------------------------------------------------------------------------- intervals

INTERVALS_HEAD = (
    "transport",
    "profile",
    "sessions",
    "result shown",
    "delivery (events)",
    "went back",
    "stalls",
    "time to result p50 real s",
    "time to result p95 real s",
    "resume p50 real s",
    "latency p95 real ms",
)


def _share(k: int, n: int) -> str:
    if n <= 0:
        return "–"
    low, high = wilson(k, n)
    return f"{k / n:.2f} ({low:.2f}–{high:.2f})"


def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _pctl(values: pd.Series, q: float) -> str:
    data = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if data.size == 0:
        return "–"
    ci = percentile_ci(data, q)
    point = float(pd.Series(data).quantile(q / 100))
    shown = _num(point)
    if ci is None:
        return shown
    return f"{shown} ({_num(ci[0])}–{_num(ci[1])})" + (SMALL_MARK if small_sample(data.size) else "")


def _numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def _delivery(cell: CellSummary, mine: pd.DataFrame) -> str:
    """Delivery with an interval that resamples sessions (a session's events are not independent)."""
    if cell.delivery_ratio is None:
        return "–"
    shown = f"{cell.delivery_ratio:.2f}"
    if not {"events_received", "events_expected"} <= set(mine.columns):
        return shown
    ci = cluster_ratio_ci(
        _numbers(mine["events_received"]).tolist(), _numbers(mine["events_expected"]).tolist()
    )
    return shown if ci is None else f"{shown} ({ci[0]:.2f}–{ci[1]:.2f})"


def _clustered(frame: pd.DataFrame, group: str, column: str, q: float) -> str:
    """A percentile of per-event values with an interval that resamples whole sessions (``group``)."""
    if frame.empty or not {group, column} <= set(frame.columns):
        return "–"
    values = frame.assign(**{column: _numbers(frame[column])}).dropna(subset=[column])
    if values.empty:
        return "–"
    groups = [g[column].to_numpy(dtype=float) for _, g in values.groupby(group)]
    ci = cluster_percentile_ci(groups, q)
    shown = _num(float(values[column].quantile(q / 100)))
    mark = SMALL_MARK if small_sample(len(groups)) else ""
    return shown if ci is None else f"{shown} ({_num(ci[0])}–{_num(ci[1])}){mark}"


def _of(frame: pd.DataFrame, cell: CellSummary) -> pd.DataFrame:
    if frame.empty or "transport" not in frame or "profile" not in frame:
        return frame.iloc[0:0]
    return frame[(frame["transport"] == cell.transport) & (frame["profile"] == cell.profile)]


def intervals_rows(
    cells: Sequence[CellSummary], sessions: pd.DataFrame, events: pd.DataFrame
) -> list[list[str]]:
    """Per cell: each share with its Wilson interval, each percentile with its bootstrap interval."""
    resumes = resume_values(sessions)
    if not events.empty and "duplicate" in events:
        events = events[~events["duplicate"].astype(str).isin(("True", "true", "1"))]
    rows = []
    for c in cells:
        n = c.sessions
        terminal = 0 if c.terminal_ratio is None else round(c.terminal_ratio * n)
        mine = _of(sessions, c)
        ttr = mine["time_to_result_s"] if "time_to_result_s" in mine else pd.Series(dtype=float)
        lat = _of(events, c)
        resume = _of(resumes, c)
        rows.append(
            [
                c.transport,
                c.profile,
                f"{n}{SMALL_MARK if small_sample(n) else ''}",
                _share(terminal, n),
                _delivery(c, mine),
                _share(c.progress_regressions, n),
                _share(c.silent_stalls, n),
                _pctl(ttr, 50),
                _pctl(ttr, 95),
                _clustered(resume, "session", "value", 50),
                _clustered(lat, "session_id", "latency_ms", 95),
            ]
        )
    return rows
