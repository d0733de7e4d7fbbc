"""The report's pictures: session timelines, distributions, delivery paths.

Each function takes data (summary cells, the per-session table, a sample of raw
session records) and returns a base64 PNG, or None when there is nothing to
draw. Every time axis is in real-time-equivalent seconds: the run compressed
time by ``time_scale``; the pictures divide by it. PNGs are drawn small and
quantised to a palette, since report.html embeds them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter
from PIL import Image

from progressbench.core.events import SessionRecord
from progressbench.core.summary import CellSummary

#: Matplotlib 3.10 replaced ``vert=False`` with ``orientation="horizontal"`` (3.11 warns on the old).
_HORIZONTAL: dict[str, Any] = (
    {"orientation": "horizontal"}
    if tuple(int(p) for p in matplotlib.__version__.split(".")[:2] if p.isdigit()) >= (3, 10)
    else {"vert": False}
)
PATHS = ("live", "replay", "refetch", "snapshot", "poll")
#: Sessions drawn per cell in the timelines, and cells drawn at most.
LANES_PER_CELL = 3
TIMELINE_CELLS = 6
DPI = 80


def compact_number(value: float) -> str:
    """``0.05``, ``3``, ``250``, ``1k``, ``20k``, ``1.5M``: a log axis's tick label in plain text."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


class _PlainLog(LogFormatter):
    """Which ticks get a label stays matplotlib's choice; the label is plain text."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return compact_number(x) if super().__call__(x, pos) else ""


def plain_log(axis: Any) -> None:
    """Label a log axis in plain text (``0.1``, ``10``, ``1k``) rather than matplotlib's default
    mathtext (``10^n``): parsing those labels was a tenth of a report's drawing time."""
    axis.set_major_formatter(_PlainLog())
    axis.set_minor_formatter(_PlainLog(labelOnlyBase=False))


def png(fig: Any) -> str:
    """The figure as a base64 PNG, quantised to 64 colours (a third of the bytes, same look)."""
    buf = io.BytesIO()
    # Each figure has laid itself out (tight_layout, once). Without a layout engine and without
    # ``bbox_inches="tight"``, savefig draws the figure once instead of twice (a dry run first).
    fig.set_layout_engine("none")
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    buf.seek(0)
    image = Image.open(buf).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode()


# --------------------------------------------------------------------------- timelines


def _lane_score(record: SessionRecord) -> int:
    """How much a session shows: disconnects, resubmissions, a missing result."""
    kinds = [o.type for o in record.observations]
    return (
        kinds.count("disconnected")
        + 2 * kinds.count("resubmitted")
        + 3 * (record.outcome != "terminal")
        + kinds.count("gap_flagged")
    )


def pick_sessions(records: Sequence[SessionRecord], lanes: int = LANES_PER_CELL) -> list[SessionRecord]:
    """The sessions that explain a cell best: most eventful first, the session id breaking ties."""
    return sorted(records, key=lambda r: (-_lane_score(r), r.session_id))[:lanes]


def pick_cells(cells: Sequence[CellSummary], limit: int = TIMELINE_CELLS) -> list[CellSummary]:
    """Faulted cells first (most trouble first), then clean ones, at most ``limit``."""

    def trouble(c: CellSummary) -> tuple[int, float, int]:
        terminal = c.terminal_ratio if c.terminal_ratio is not None else 0.0
        return (
            0 if c.fault_windows else 1,
            terminal
            - (c.progress_regressions + c.silent_stalls + c.duplicate_executions) / max(c.sessions, 1),
            -c.disconnects,
        )

    return sorted(cells, key=trouble)[:limit]


def stalls(record: SessionRecord, commits: Sequence[int]) -> list[tuple[int, int]]:
    """Spans (wall ns) the screen stayed frozen, with no error shown, while the job committed work.

    The rule of ``core.session_scores.silent_stall``, drawn: from each commit (outside a
    disconnect) to the next screen change (a higher step shown, or an error), when that
    is longer than the session's stall threshold. ``commits`` are the commit times of the
    events the phone received (``events.csv``); a commit it never received is not drawn.
    """
    obs = record.observations
    signals: list[int] = []
    shown = 0
    down: list[tuple[int, int]] = []
    since: int | None = None
    for o in obs:
        if o.type == "progress" and o.seq is not None and o.shown:
            if o.seq > shown:
                signals.append(o.wall_ns)
            shown = max(shown, o.seq)
        elif o.type in ("disconnected", "gap_flagged", "resubmitted"):
            signals.append(o.wall_ns)
        if o.type == "disconnected" and since is None:
            since = o.wall_ns
        elif o.type in ("reconnected", "resumed") and since is not None:
            down.append((since, o.wall_ns))
            since = None
    if since is not None:
        down.append((since, record.ended_wall_ns))
    signals.sort()
    limit = int(record.stall_threshold_s * 1e9)
    spans: list[tuple[int, int]] = []
    for t in sorted(commits):
        if not record.started_wall_ns <= t < record.ended_wall_ns or any(a <= t <= b for a, b in down):
            continue
        end = next((s for s in signals if s >= t), record.ended_wall_ns)
        if end - t > limit:
            if spans and t <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((t, end))
    return spans


def _lane(
    ax: Any, y: float, record: SessionRecord, windows: Sequence[tuple[float, float]], commits: Sequence[int]
) -> None:
    scale = record.time_scale or 1.0
    t0 = record.started_wall_ns

    def x(ns: int) -> float:
        return (ns - t0) / 1e9 / scale

    for start, end in windows:
        ax.broken_barh([(start, end - start)], (y - 0.05, 0.9), color="#f4b6b6", alpha=0.7, lw=0)
    own = {record.job_id, *record.extra_job_ids} - {None}
    shown = [o for o in record.observations if o.type == "progress" and o.shown and o.job_id in own]
    top = max((o.seq or 0 for o in shown), default=1) or 1
    peak = 0
    xs: list[float] = []
    ys: list[float] = []
    for o in shown:
        seq = o.seq or 0
        xs.append(x(o.wall_ns))
        ys.append(y + 0.8 * seq / top)
        if seq < peak:
            ax.plot(xs[-1], ys[-1], "v", color="#d62728", ms=6, zorder=4)
        peak = max(peak, seq)
    if xs:
        ax.step(xs, ys, where="post", color="#1f77b4", lw=0.8)
        ax.plot(xs, ys, "|", color="#1f77b4", ms=5)
    for a, b in stalls(record, commits):
        ax.plot([x(a), x(b)], [y - 0.08, y - 0.08], color="#ff7f0e", lw=3, solid_capstyle="butt")
    marks = {"disconnected": ("x", "#d62728"), "reconnected": ("^", "#555555"), "resumed": ("o", "#2ca02c")}
    marks["resubmitted"] = ("s", "#9467bd")
    for o in record.observations:
        if o.type in marks:
            marker, color = marks[o.type]
            ax.plot(x(o.wall_ns), y + 0.4, marker, color=color, ms=5, mfc="none" if marker == "o" else color)
    end = x(record.ended_wall_ns)
    ax.plot(
        end,
        y + 0.85,
        "*" if record.outcome == "terminal" else "X",
        ms=8,
        color="#2ca02c" if record.outcome == "terminal" else "#444444",
    )


def timelines_plot(
    cells: Sequence[CellSummary],
    records: Mapping[tuple[str, str], Sequence[SessionRecord]],
    commits: Mapping[str, Sequence[int]] | None = None,
) -> str | None:
    """Swimlanes: per cell a few sessions, events as ticks by step, faults shaded, marks for the rest."""
    chosen = [c for c in pick_cells([c for c in cells if records.get((c.transport, c.profile))])]
    if not chosen:
        return None
    fig, axes = plt.subplots(
        len(chosen), 1, figsize=(8.5, 1.0 + 0.75 * LANES_PER_CELL * len(chosen) / 2), squeeze=False
    )
    for ax, cell in zip(axes[:, 0], chosen, strict=True):
        lanes = pick_sessions(records[(cell.transport, cell.profile)])
        for i, record in enumerate(lanes):
            scale = record.time_scale or 1.0
            windows = [
                (
                    (w.start_wall_ns - record.started_wall_ns) / 1e9 / scale,
                    (w.start_wall_ns - record.started_wall_ns) / 1e9 / scale + w.duration_s / scale,
                )
                for w in cell.fault_windows
                if w.start_wall_ns is not None
                and (w.cell is None or w.cell == record.cell)
                and w.start_wall_ns <= record.ended_wall_ns
                and w.start_wall_ns + w.duration_s * 1e9 >= record.started_wall_ns
            ]
            _lane(ax, float(i), record, windows, (commits or {}).get(record.session_id, ()))
        ax.set_yticks([i + 0.4 for i in range(len(lanes))], [f"{r.owner}" for r in lanes], fontsize=7)
        ax.set_ylim(-0.3, len(lanes))
        ax.set_xlim(left=0)
        ax.set_title(cell.label, fontsize=9, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("real-time-equivalent seconds since the phone's first request")
    legend = [
        Line2D([], [], color="#1f77b4", marker="|", lw=0.8, label="progress shown (height = step)"),
        Patch(color="#f4b6b6", label="fault window"),
        Line2D([], [], color="#d62728", marker="x", lw=0, label="disconnect"),
        Line2D([], [], color="#555555", marker="^", lw=0, label="reconnect"),
        Line2D([], [], color="#2ca02c", marker="o", mfc="none", lw=0, label="resumed"),
        Line2D([], [], color="#9467bd", marker="s", lw=0, label="re-POST"),
        Line2D([], [], color="#d62728", marker="v", lw=0, label="progress went back"),
        Line2D([], [], color="#ff7f0e", lw=3, label="silent stall (work committed, screen frozen)"),
        Line2D([], [], color="#2ca02c", marker="*", lw=0, label="result shown"),
        Line2D([], [], color="#444444", marker="X", lw=0, label="ended without result"),
    ]
    top = 1.0 - 0.6 / fig.get_figheight()  # the title and the legend's two rows above the lanes
    fig.suptitle("Session timelines: what a few phones per cell lived through", fontsize=10, y=0.995)
    fig.legend(
        handles=legend,
        loc="upper center",
        ncol=5,
        fontsize=7,
        bbox_to_anchor=(0.5, 1.0 - 0.25 / fig.get_figheight()),
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, top))
    return png(fig)


def commit_times(events: pd.DataFrame) -> dict[str, list[int]]:
    """Per session id, the commit times (wall ns) of the events it received, from ``events.csv``."""
    if events.empty or not {"session_id", "committed_wall_ns"} <= set(events.columns):
        return {}
    frame = events[["session_id", "committed_wall_ns"]].assign(
        committed_wall_ns=lambda f: pd.to_numeric(f["committed_wall_ns"], errors="coerce")
    )
    frame = frame.dropna()
    return {
        str(sid): [int(v) for v in group["committed_wall_ns"]] for sid, group in frame.groupby("session_id")
    }


# --------------------------------------------------------------------------- distributions


def _number(text: object) -> float:
    """A float from a table cell; NaN when it is not a number (a results file is not trusted)."""
    try:
        return float(str(text).strip())
    except ValueError:
        return float("nan")


def resume_values(sessions: pd.DataFrame) -> pd.DataFrame:
    """One row per resume: transport, profile, the session's row number, its time in real seconds."""
    columns = ["transport", "profile", "session", "value"]
    if sessions.empty or not {"transport", "profile", "resume_ms"} <= set(sessions.columns):
        return pd.DataFrame(columns=columns)
    rows = [
        (t, p, i, _number(v) / 1000)
        for i, (t, p, text) in enumerate(
            sessions[["transport", "profile", "resume_ms"]].itertuples(index=False)
        )
        for v in str(text).split(";")
        if _number(v) == _number(v)  # not NaN: unreadable or missing values are skipped
    ]
    return pd.DataFrame(rows, columns=columns)


def _box_panels(data: pd.DataFrame, title: str, xlabel: str) -> str | None:
    data = data.dropna(subset=["value"])
    if data.empty:
        return None
    profiles = list(dict.fromkeys(data["profile"]))
    transports = list(dict.fromkeys(data["transport"]))
    cols = min(len(profiles), 3)
    rows = (len(profiles) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.4 * cols, 0.35 * len(transports) * rows + 1.2 * rows),
        squeeze=False,
        sharey=True,
    )
    for ax, profile in zip(axes.flat, profiles, strict=False):
        groups = [
            data[(data["profile"] == profile) & (data["transport"] == t)]["value"].to_numpy()
            for t in transports
        ]
        present = [i for i, g in enumerate(groups) if len(g)]
        if present:
            ax.boxplot(
                [groups[i] for i in present],
                positions=present,
                **_HORIZONTAL,
                widths=0.6,
                showfliers=False,
                medianprops={"color": "#d62728"},
            )
        for i in present:
            ax.plot(groups[i], [i] * len(groups[i]), "|", color="#1f77b4", alpha=0.6, ms=7)
            ax.text(
                1.0,
                i,
                f" n={len(groups[i])}",
                transform=ax.get_yaxis_transform(),
                fontsize=6,
                va="center",
                color="#666666",
            )
        ax.set_yticks(range(len(transports)), transports, fontsize=7)
        ax.set_ylim(-0.6, len(transports) - 0.4)
        ax.set_title(profile, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(True, axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(profiles) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)


def result_time_plot(sessions: pd.DataFrame) -> str | None:
    """Time to result per transport, one panel per profile (box + every session as a tick)."""
    if sessions.empty or "time_to_result_s" not in sessions:
        return None
    data = sessions[["transport", "profile", "time_to_result_s"]].rename(
        columns={"time_to_result_s": "value"}
    )
    data = data.assign(value=pd.to_numeric(data["value"], errors="coerce"))
    return _box_panels(
        data,
        "Time to result per session (sessions without a result are not drawn)",
        "first request → result shown (real s)",
    )


def resume_time_plot(sessions: pd.DataFrame) -> str | None:
    """Resume time per transport, one panel per profile (each reconnect's resume a tick)."""
    return _box_panels(
        resume_values(sessions), "Resume time per reconnect", "network back → first fresh event (real s)"
    )


def paths_plot(cells: Sequence[CellSummary]) -> str | None:
    """How the unique events first arrived, per transport: without faults, and under faults."""
    totals: dict[str, dict[str, int]] = {}
    for c in cells:
        row = f"{c.transport} ({'under faults' if c.fault_windows else 'no fault'})"
        into = totals.setdefault(row, dict.fromkeys(PATHS, 0))
        for path, n in c.delivery_paths.items():
            into[path] = into.get(path, 0) + n
    totals = {t: v for t, v in sorted(totals.items()) if sum(v.values())}
    if not totals:
        return None
    transports = list(totals)
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(transports) + 1.3))
    left = [0.0] * len(transports)
    colors = {
        "live": "#2ca02c",
        "replay": "#1f77b4",
        "refetch": "#ff7f0e",
        "snapshot": "#9467bd",
        "poll": "#8c8c8c",
    }
    for path in PATHS:
        shares = [totals[t].get(path, 0) / sum(totals[t].values()) for t in transports]
        ax.barh(transports, shares, left=left, color=colors[path], label=path)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of unique events received, by how each first arrived")
    ax.legend(fontsize=7, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return png(fig)
