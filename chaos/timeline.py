"""Expand a profile into the concrete, ordered actions of one run of a cell matrix.

Pure code: a profile, the number of cells and the time scale in; a sorted
list of :class:`Action` out. Each cell gets the profile's network steps
offset by ``stagger × cell index``; server faults (``target: worker``) and
dispatch faults happen once for the whole stack, not per cell.

A profile with ``repeat_every`` runs its network steps again every that many
seconds, cycle after cycle, for as long as the cell runs: phones start
their second and later jobs after the first timeline is over, and a session
that never meets the fault says nothing about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from progressbench.chaos.profiles import FaultStep, Profile
from progressbench.chaos.proxy.toxics.blackhole import LINUX_RTO_MAX_MS

ActionKind = Literal["apply", "release", "remove"]

#: Toxic attributes that are durations (ms, or µs for slicer ``delay``): scaled like
#: every other duration. Sizes (``bytes``, segment sizes) are not.
DURATION_ATTRIBUTES = frozenset({"latency", "jitter", "timeout", "delay", "close_after", "rto_max"})
#: Toxic attributes that are rates (per second): divided by the scale, so a transfer that takes
#: 2 s on a real 3G link takes 2 s × scale in the run, like every other duration.
RATE_ATTRIBUTES = frozenset({"rate"})


def scaled_attributes(attributes: dict[str, int], time_scale: float) -> dict[str, int]:
    """Durations times the scale, rates over it; never rounded down to 0 (0 means "forever" or "stall")."""
    scaled: dict[str, int] = {}
    for key, value in attributes.items():
        if value and key in DURATION_ATTRIBUTES:
            value = max(1, round(value * time_scale))
        elif value and key in RATE_ATTRIBUTES:
            value = max(1, round(value / time_scale))
        scaled[key] = value
    return scaled


def lingers_s(step: FaultStep) -> float:
    """Real seconds a fault stays after its window ends (0: removed at the end).

    A ``blackhole`` with retransmission back-off (``rto_initial`` > 0) is
    *released* when the tunnel ends — stuck connections wait for their next
    retransmission — and removed ``rto_max`` later, when none can be pending.
    """
    if step.fault == "blackhole" and step.attributes.get("rto_initial", 0) > 0:
        return float(step.attributes.get("rto_max", LINUX_RTO_MAX_MS)) / 1000
    return 0.0


@dataclass(frozen=True, slots=True)
class Action:
    #: Seconds after the cell matrix started (scaled); None: when ``at_step`` is reached.
    at_s: float | None
    kind: ActionKind
    step_index: int
    step: FaultStep
    #: Phone cell the fault hits, or None for a stack-wide fault.
    cell: int | None
    #: Which repetition of the timeline (0: the first).
    cycle: int = 0

    @property
    def key(self) -> str:
        """Names the toxic (per step, stream, cell and cycle) so its removal finds it."""
        where = "all" if self.cell is None else f"c{self.cell}"
        again = f"-r{self.cycle}" if self.cycle else ""
        return f"pb-{self.step_index}-{self.step.fault}-{self.step.stream}-{where}{again}"

    @property
    def order(self) -> tuple[float, int]:
        # removals and releases before applications at the same instant: a fault never overlaps its successor
        return (self.at_s if self.at_s is not None else -1.0, 1 if self.kind == "apply" else 0)


def schedule(profile: Profile, time_scale: float, cycle: int = 0) -> list[Action]:
    """Every apply/remove of one cycle of the profile, in the order the controller runs them.

    Cycle 0 is the whole profile; later cycles (``repeat_every``) repeat the
    phones' network steps only, each ``repeat_every`` seconds after the last.
    """
    actions: list[Action] = []
    base = cycle * profile.repeat_every
    for index, step in enumerate(profile.steps):
        if step.is_server_fault:
            if cycle == 0:
                at = None if step.at_step is not None else step.at * time_scale
                actions.append(Action(at, "apply", index, step, None))
            continue
        if cycle and step.target != "phones":
            continue
        cells: list[int | None] = [None] if step.target == "dispatch" else list(range(profile.cells))
        for cell in cells:
            offset = (cell or 0) * profile.stagger
            start = (base + step.at + offset) * time_scale
            actions.append(Action(start, "apply", index, step, cell, cycle))
            if step.for_s > 0:
                end = start + step.for_s * time_scale
                linger = lingers_s(step)
                if linger:
                    actions.append(Action(end, "release", index, step, cell, cycle))
                    actions.append(Action(end + linger * time_scale, "remove", index, step, cell, cycle))
                else:
                    actions.append(Action(end, "remove", index, step, cell, cycle))
    timed = sorted((a for a in actions if a.at_s is not None), key=lambda a: a.order)
    return [a for a in actions if a.at_s is None] + timed
