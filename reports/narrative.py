"""The verdict a report opens with: per fault profile, the patterns ranked, and sentences from the numbers.

A reader of a report wants what an engineer would write after reading the
data: under this fault, which pattern kept the person informed, which did not
and how it showed. This module derives exactly that from the cells of a
``summary.json`` and nothing else: :class:`CellSummary` values in,
:class:`Standing` s (ranked) and plain sentences out. No I/O, no formatting
beyond the words, so the Markdown and the HTML report say the same thing.

How a pattern "kept the user informed" is judged (per cell, over all its sessions):

* ``kept informed``: every session learned the job's outcome (terminal), no
  screen showed progress going backwards, no silent stall, no event lost;
* ``left users uninformed``: fewer than :data:`UNINFORMED_BELOW` of the
  sessions learned the outcome;
* ``informed, with flaws`` otherwise.

Ranking within a profile is lexicographic, worst trouble first: the share of
sessions that learned the outcome (higher first), then the share whose progress
went backwards, then the share with a silent stall (lower first), then median
time to result over the job's own duration (lower first). Cells equal on the
first three that differ in time to result only within the noise share a rank.
Ratios carry their Wilson interval; a cell below
:data:`~progressbench.reports.uncertainty.SMALL_N` sessions is marked small.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from progressbench.reports.uncertainty import percentile_change, small_sample, wilson

from progressbench.core.summary import CellSummary

#: Below this share of sessions learning the outcome, a pattern left its users uninformed.
UNINFORMED_BELOW: Final = 0.8
#: A median time to result this much longer than the job itself is worth a sentence.
SLOW_RATIO: Final = 1.5
#: ... and this much longer than the same pattern without faults.
SLOWER_THAN_CLEAN: Final = 1.2
#: Without per-session samples, medians of time to result this close (relative) share a rank.
TIE_RATIO: Final = 0.1
#: The profile taken as the no-fault reference for "×N slower than clean".
CLEAN: Final = "clean"

Grade = Literal["kept informed", "informed, with flaws", "left users uninformed", "no data"]


@dataclass(frozen=True)
class Standing:
    """One cell's place in its profile's ranking, and what to say about it."""

    transport: str
    profile: str
    rank: int
    grade: Grade
    sessions: int
    #: Sessions that learned the outcome, with its 95 % Wilson interval.
    terminal: int
    terminal_ci: tuple[float, float]
    regressions: int
    stalls: int
    #: Median time to result over the job's planned duration (None: nobody got a result).
    ttr_ratio: float | None
    small: bool
    saturated: bool
    sentences: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.transport} × {self.profile}"


def _count(ratio: float | None, n: int) -> int:
    """The count behind a stored ratio of ``n`` sessions (ratios are rounded to 6 places)."""
    return 0 if ratio is None or n <= 0 else round(ratio * n)


def _share(part: int, n: int) -> float:
    return part / n if n else 0.0


def grade(cell: CellSummary) -> Grade:
    """The cell's grade by the rules of the module docstring."""
    n = cell.sessions
    if n == 0 or cell.terminal_ratio is None:
        return "no data"
    if cell.terminal_ratio < UNINFORMED_BELOW:
        return "left users uninformed"
    if (
        cell.terminal_ratio >= 1.0
        and not cell.progress_regressions
        and not cell.silent_stalls
        and not cell.lost
    ):
        return "kept informed"
    return "informed, with flaws"


def _key(cell: CellSummary) -> tuple[float, float, float, float]:
    n = cell.sessions
    ttr = cell.time_to_result_ratio.p50
    return (
        -(cell.terminal_ratio if cell.terminal_ratio is not None else -1.0),
        _share(cell.progress_regressions, n),
        _share(cell.silent_stalls, n),
        ttr if ttr is not None else float("inf"),
    )


def _times(value: float) -> str:
    return f"×{value:.1f}" if value < 10 else f"×{value:.0f}"


def _of(part: int, whole: int, noun: str) -> str:
    return f"{part} of {whole} {noun}"


def sentences(cell: CellSummary, clean: CellSummary | None = None) -> list[str]:
    """Plain sentences for what is notable in ``cell``; empty when nothing is.

    ``clean`` is the same transport without faults, when the run has it: time to result
    is then also stated relative to it.
    """
    n = cell.sessions
    out: list[str] = []
    if n == 0:
        return ["no session was collected"]
    if cell.foreign_events:
        out.append(f"{cell.foreign_events} events from someone else's job reached a phone (must be 0)")
    terminal = _count(cell.terminal_ratio, n)
    if terminal < n:
        low, high = wilson(terminal, n)
        out.append(
            f"{n - terminal} of {n} users never learned the result "
            f"(outcome shown to {terminal / n:.0%}, 95% CI {low:.0%}–{high:.0%})"
        )
    if cell.gave_up_at_submit:
        out.append(
            _of(cell.gave_up_at_submit, n, "users") + " gave up before a job existed (every tap failed)"
        )
    spread = cell.executions_per_intent
    if cell.duplicate_executions:
        most = f", one up to {spread.max} times" if spread.max and spread.max > 2 else ""
        out.append(_of(cell.duplicate_executions, cell.jobs or n, "requests") + f" ran more than once{most}")
    if cell.progress_regressions:
        out.append(_of(cell.progress_regressions, n, "users") + " saw progress go backwards")
    if cell.silent_stalls:
        out.append(
            _of(cell.silent_stalls, n, "users")
            + " sat in silence longer than a step while the job was progressing (silent stall)"
        )
    if cell.lost:
        out.append(f"{cell.lost} of {cell.events_expected} progress events never arrived")
    if cell.resume_outcomes.silent_gap:
        out.append(f"{cell.resume_outcomes.silent_gap} reconnects lost events without telling the client")
    if cell.duplicates:
        out.append(f"{cell.duplicates} progress events were shown twice")
    ttr = cell.time_to_result_ratio.p50
    if ttr is not None:
        base = clean.time_to_result_ratio.p50 if clean is not None and clean is not cell else None
        if base and ttr / base >= SLOWER_THAN_CLEAN:
            out.append(f"time to result {_times(ttr / base)} of the same pattern without faults (median)")
        elif ttr >= SLOW_RATIO:
            out.append(f"time to result {_times(ttr)} the job's own duration (median)")
    if cell.wasted_work_s:
        out.append(f"{cell.wasted_work_s:,.0f} s of execution (real time) produced output nobody kept")
    if cell.stuck_jobs:
        out.append(_of(cell.stuck_jobs, cell.jobs or n, "jobs") + " were left unfinished in the store")
    if cell.silent_fallbacks:
        out.append(f"{cell.silent_fallbacks} jobs ran outside their pattern's execution context")
    if out and cell.saturated:
        out.append("caution: this cell saturated the machine, so it measured capacity as much as the pattern")
    if out and small_sample(n):
        out.append(f"only {n} sessions: read these as hints, not rates")
    return out


def _tied(a: CellSummary, b: CellSummary, samples: Mapping[tuple[str, str], Sequence[float]] | None) -> bool:
    """Equal on the first three keys, and their times to result within the noise of each other."""
    if _key(a)[:3] != _key(b)[:3]:
        return False
    ta, tb = a.time_to_result_ratio.p50, b.time_to_result_ratio.p50
    if ta is None or tb is None:
        return ta is tb
    sa = (samples or {}).get((a.transport, a.profile))
    sb = (samples or {}).get((b.transport, b.profile))
    if sa is not None and sb is not None and len(sa) and len(sb):
        return not percentile_change(sa, sb, 50).significant
    return abs(tb - ta) <= TIE_RATIO * max(ta, tb)


def standings(
    cells: Sequence[CellSummary], ttr_samples: Mapping[tuple[str, str], Sequence[float]] | None = None
) -> dict[str, list[Standing]]:
    """Per profile (the run's order, ``clean`` last), its cells ranked best first, with sentences.

    ``ttr_samples`` (per (transport, profile), each session's time to result over job time)
    lets two cells whose medians differ only within the noise share a rank (bootstrap, see
    :func:`~progressbench.reports.uncertainty.percentile_change`); without them, medians
    within :data:`TIE_RATIO` of each other tie.
    """
    clean = {c.transport: c for c in cells if c.profile == CLEAN}
    by_profile: dict[str, list[CellSummary]] = {}
    for cell in cells:
        by_profile.setdefault(cell.profile, []).append(cell)
    result: dict[str, list[Standing]] = {}
    # faults first (what the reader came for), the no-fault reference last
    for profile, group in sorted(by_profile.items(), key=lambda item: item[0] == CLEAN):
        ordered = sorted(group, key=_key)
        ranked: list[Standing] = []
        for index, cell in enumerate(ordered):
            rank = ranked[-1].rank if ranked and _tied(ordered[index - 1], cell, ttr_samples) else index + 1
            terminal = _count(cell.terminal_ratio, cell.sessions)
            ranked.append(
                Standing(
                    transport=cell.transport,
                    profile=profile,
                    rank=rank,
                    grade=grade(cell),
                    sessions=cell.sessions,
                    terminal=terminal,
                    terminal_ci=wilson(terminal, cell.sessions),
                    regressions=cell.progress_regressions,
                    stalls=cell.silent_stalls,
                    ttr_ratio=cell.time_to_result_ratio.p50,
                    small=small_sample(cell.sessions),
                    saturated=cell.saturated,
                    sentences=sentences(cell, clean.get(cell.transport)),
                )
            )
        result[profile] = ranked
    return result


def summary_line(profile: str, ranked: Sequence[Standing]) -> str:
    """One sentence per profile: who kept users informed, who did not."""
    kept = [s.transport for s in ranked if s.grade == "kept informed"]
    flawed = [s.transport for s in ranked if s.grade == "informed, with flaws"]
    lost = [s.transport for s in ranked if s.grade == "left users uninformed"]
    parts = []
    if kept:
        parts.append(f"{', '.join(kept)} kept every user informed")
    if flawed:
        parts.append(f"{', '.join(flawed)} informed users, with flaws")
    if lost:
        parts.append(f"{', '.join(lost)} left users without the result")
    return f"Under {profile}: " + ("; ".join(parts) if parts else "no data") + "."


def cost_line(cells: Sequence[CellSummary]) -> str | None:
    """One sentence comparing the patterns' cost per 1,000 jobs at the run's load, cheapest first.

    Each transport's figure is the median over its cells (faults change the bill little
    next to the pattern); None when no cell was priced.
    """
    priced: dict[str, list[float]] = {}
    for c in cells:
        if c.cost_usd_per_1k_jobs is not None:
            priced.setdefault(c.transport, []).append(c.cost_usd_per_1k_jobs)
    if not priced:
        return None
    median = {t: statistics.median(v) for t, v in priced.items()}
    order = sorted(median, key=lambda t: (median[t], t))
    listed = ", ".join(f"{t} ${median[t]:.3g}" for t in order)
    line = (
        "Cost per 1,000 jobs at this run's load, without free tiers (median over profiles), "
        f"cheapest first: {listed}."
    )
    cheap, dear = order[0], order[-1]
    if len(order) > 1 and median[cheap] > 0:
        line += f" {dear} costs {_times(median[dear] / median[cheap])} {cheap}."
    return line
