"""Timers that cannot follow the time scale, and what they become in real-time-equivalent seconds.

A run compresses time: every duration the code owns is multiplied by the
time scale (``Timing.scaled``). A few cannot be: a library constant with no
option (the official realtime client's rejoin delays, websockets' keepalive
inside it), a floor the code keeps because the machine's CPU does not speed
up (HTTP connect/read timeouts), a measured cost (a replacement instance's
Python start-up). At scale 0.05 a 20 s library ping is a 400 s ping in the
world the run stands for; a verdict that depends on it is a verdict about
the compression. Each such timer is declared as data (:class:`Timer`) where
it lives, and :func:`distortions` says, for a given scale, which of them are
off and by how much. Pure code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Relative difference under which a timer counts as following the scale (rounding to ms, say).
TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class Timer:
    """One timer as the code runs it.

    ``real_s`` is what it stands for in the world (time scale 1.0). It runs
    for ``real_s × scale`` seconds, but never below ``floor_s``; or, when
    ``fixed_s`` is set, for ``fixed_s`` seconds whatever the scale (a
    library constant, or a duration measured during the run).
    """

    name: str
    real_s: float
    floor_s: float = 0.0
    fixed_s: float | None = None

    def effective_s(self, time_scale: float) -> float:
        """Seconds it actually lasts in a run at ``time_scale``."""
        if self.fixed_s is not None:
            return self.fixed_s
        return max(self.real_s * time_scale, self.floor_s)

    def effective_real_s(self, time_scale: float) -> float:
        """What it lasts in the world the run stands for: its actual seconds over the scale."""
        return self.effective_s(time_scale) / time_scale


@dataclass(frozen=True, slots=True)
class Distortion:
    """A timer the run could not scale: its real value and the real value it had in effect."""

    timer: str
    real_s: float
    effective_real_s: float


def distortions(timers: Iterable[Timer], time_scale: float, tolerance: float = TOLERANCE) -> list[Distortion]:
    """The timers that, at ``time_scale``, last something other than their real value (once each, by name)."""
    if time_scale <= 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}")
    found: dict[str, Distortion] = {}
    for timer in timers:
        effective = timer.effective_real_s(time_scale)
        if abs(effective - timer.real_s) <= tolerance * max(timer.real_s, 1e-9):
            continue
        found.setdefault(timer.name, Distortion(timer.name, round(timer.real_s, 3), round(effective, 3)))
    return list(found.values())


def measured(name: str, real_s: float, seconds: Iterable[float]) -> Timer | None:
    """A timer whose run-time length was measured (e.g. instance start-ups); None without samples.

    The longest sample is a floor: a start-up faster than the scaled modelled
    delay waits out the rest of it, so only a slower one distorts.
    """
    samples = list(seconds)
    if not samples:
        return None
    return Timer(name, real_s, floor_s=max(samples))


def order_flips(found: Iterable[Distortion], spans: Iterable[tuple[str, float]]) -> list[str]:
    """Distortions that put a timer on the other side of a duration the verdict turns on.

    ``spans`` are ``(what, real seconds)``: a fault window's length, the job's
    planned length. A watchdog of 15 s detects a 90 s tunnel; stretched to
    150 s by a floor it does not, so the cell's verdict is about the
    compression, not the pattern. Only a flip of order counts: a timer
    distorted from 10 s to 20 s against a 90 s tunnel changes a number, not
    the outcome class. One sentence per flip, for the report.
    """
    spans = [(what, length) for what, length in spans if length > 0]
    notes: list[str] = []
    for d in found:
        low, high = sorted((d.real_s, d.effective_real_s))
        for what, length in spans:
            if low < length < high:
                notes.append(
                    f"{d.timer}: {d.real_s:g} s in the world, {d.effective_real_s:g} s in this run, "
                    f"on the other side of {what} ({length:g} s)"
                )
    return notes
