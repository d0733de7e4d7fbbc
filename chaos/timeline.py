"""Expand a profile into the concrete, ordered actions of one run of a cell matrix.

Pure code: a profile, the number of cells and the time scale in; a sorted
list of :class:`Action` out. Each cell gets the profile's network steps
offset by ``stagger × cell index``; server faults (``target: worker``) and
dispatch faults happen once for the whole stack, not per cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from progressbench.chaos.profiles import FaultStep, Profile

ActionKind = Literal["apply", "remove"]

#: Toxic attributes that are durations (ms, or µs for slicer ``delay``): scaled like
#: every other duration. Rates (``rate``, sizes, ``bytes``) are not.
DURATION_ATTRIBUTES = frozenset({"latency", "jitter", "timeout", "delay", "close_after"})


def scaled_attributes(attributes: dict[str, int], time_scale: float) -> dict[str, int]:
    """Durations times the scale, never rounded down to 0 (0 means "forever" for some toxics)."""
    return {
        key: (max(1, round(value * time_scale)) if value and key in DURATION_ATTRIBUTES else value)
        for key, value in attributes.items()
    }


@dataclass(frozen=True, slots=True)
class Action:
    #: Seconds after the cell matrix started (scaled); None: when ``at_step`` is reached.
    at_s: float | None
    kind: ActionKind
    step_index: int
    step: FaultStep
    #: Phone cell the fault hits, or None for a stack-wide fault.
    cell: int | None

    @property
    def key(self) -> str:
        """Names the toxic (per step, stream and cell) so its removal finds it."""
        where = "all" if self.cell is None else f"c{self.cell}"
        return f"pb-{self.step_index}-{self.step.fault}-{self.step.stream}-{where}"

    @property
    def order(self) -> tuple[float, int]:
        # removals before applications at the same instant: a fault never overlaps its successor
        return (self.at_s if self.at_s is not None else -1.0, 0 if self.kind == "remove" else 1)


def schedule(profile: Profile, time_scale: float) -> list[Action]:
    """Every apply/remove of the profile, in the order the controller runs them."""
    actions: list[Action] = []
    for index, step in enumerate(profile.steps):
        if step.is_server_fault:
            at = None if step.at_step is not None else step.at * time_scale
            actions.append(Action(at, "apply", index, step, None))
            continue
        cells: list[int | None] = [None] if step.target == "dispatch" else list(range(profile.cells))
        for cell in cells:
            offset = (cell or 0) * profile.stagger
            start = (step.at + offset) * time_scale
            actions.append(Action(start, "apply", index, step, cell))
            if step.for_s > 0:
                actions.append(Action(start + step.for_s * time_scale, "remove", index, step, cell))
    timed = sorted((a for a in actions if a.at_s is not None), key=lambda a: a.order)
    return [a for a in actions if a.at_s is None] + timed
