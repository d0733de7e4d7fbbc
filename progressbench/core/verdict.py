"""A cell's verdict in coarse classes: what must not change when only the time scale does.

A compressed run (time scale 0.05-0.1) is worth something only if its
verdicts transfer to real time. Exact numbers do not (a few sessions, jittered
back-offs, a fault landing one step earlier), so the calibration compares
classes, with the tolerance written into their boundaries:

* ``delivery``: ``complete`` when at least ``DELIVERY_COMPLETE`` of the
  committed events arrived (one event in fifty may fall to where a window
  boundary lands), else ``lossy``;
* ``terminal``: ``all`` / ``some`` / ``none`` of the sessions learned the result;
* ``resume``: the most frequent resume outcome, or ``none`` without resumes
  (ties broken by the fixed order of the outcomes, worst first).

The verdict reads the cell's exposed sessions when it has any (the fault's
verdict), else every session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from progressbench.core.summary import CellAggregates

DELIVERY_COMPLETE = 0.98
#: Worst first: a tie between outcomes is reported as the worse one.
_OUTCOME_ORDER = ("silent_gap", "duplicate_replay", "restarted", "gap_flagged", "replayed_complete")


@dataclass(frozen=True, slots=True)
class Verdict:
    delivery: Literal["complete", "lossy", "n/a"]
    terminal: Literal["all", "some", "none", "n/a"]
    resume: str


def verdict(cell: CellAggregates) -> Verdict:
    """The classes of one cell (see the module docstring)."""
    judged = cell.exposed if cell.exposed is not None and cell.exposed_sessions > 0 else cell
    ratio = judged.delivery_ratio
    delivery: Literal["complete", "lossy", "n/a"] = (
        "n/a" if ratio is None else "complete" if ratio >= DELIVERY_COMPLETE else "lossy"
    )
    t = judged.terminal_ratio
    terminal: Literal["all", "some", "none", "n/a"] = (
        "n/a" if t is None else "all" if t >= 1.0 else "none" if t <= 0.0 else "some"
    )
    counts = {name: getattr(judged.resume_outcomes, name) for name in _OUTCOME_ORDER}
    top = max(counts.values(), default=0)
    resume = "none" if top == 0 else next(n for n in _OUTCOME_ORDER if counts[n] == top).replace("_", "-")
    return Verdict(delivery=delivery, terminal=terminal, resume=resume)
