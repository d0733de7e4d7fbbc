"""Cloud-Run-style autoscaling, as a decision: how many instances to start, which idle ones to stop.

A service runs as N instances behind a front that admits at most
``concurrency`` requests (or open streams) per instance. The platform's
autoscaler (Cloud Run's, platform-facts §1a; sources in
``progressbench/app/SCALEOUT.md``) adds an instance when the demand no
longer fits the instances it has, and removes one that has been idle for
its idle period (Cloud Run keeps an idle instance up to about 15 minutes).
A new instance serves only after its cold start, so a request arriving
while every instance is full waits for a starting one, and is refused
(HTTP 429) when no instance can be started (``max_instances`` reached).

Everything here is pure: the front and the supervisor (``progressbench/app``)
observe in-flight counts and processes and apply :func:`decide`'s answer;
:class:`Timeline` turns the instance counts they record into what the
summary and the cost model need (max, time-weighted mean, instance-seconds).

Invariants of :func:`decide`:

* it never asks for more than ``max_instances`` (live + starting) nor stops
  below ``min_instances``;
* it starts instances only when the demand (in flight + waiting) exceeds
  what the live and starting instances can hold, and then just enough;
* it stops only instances with nothing in flight and no background work
  that have been idle for at least ``idle_s``, longest idle first, and never
  while it is also starting some.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ScalePolicy:
    """The knobs of one service's autoscaling (durations already scaled to the run)."""

    #: requests or streams one instance serves at once (Cloud Run's default: 80)
    concurrency: int = 80
    min_instances: int = 0
    max_instances: int = 4
    #: how long an instance may sit idle before it is stopped (scaled)
    idle_s: float = 900.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be ≥ 1, got {self.concurrency}")
        if not 0 <= self.min_instances <= self.max_instances or self.max_instances < 1:
            raise ValueError(
                f"need 0 ≤ min_instances ≤ max_instances and max_instances ≥ 1, "
                f"got {self.min_instances}..{self.max_instances}"
            )
        if not (math.isfinite(self.idle_s) and self.idle_s >= 0):
            raise ValueError(f"idle_s must be a finite number ≥ 0, got {self.idle_s}")

    def capacity(self, instances: int) -> int:
        return instances * self.concurrency


@dataclass(frozen=True, slots=True)
class InstanceState:
    """What the front and the supervisor know of one live (serving) instance."""

    name: str
    #: slots taken (a stream is one; a short request may weigh less, see the front)
    in_flight: float
    #: when it last had nothing in flight and no work (None: busy now)
    idle_since: float | None
    #: background work (a job after its 202) that keeps it alive without a request
    working: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    start: int = 0
    stop: tuple[str, ...] = ()


def needed(policy: ScalePolicy, demand: float) -> int:
    """Instances that hold ``demand`` concurrent requests, within the policy's bounds."""
    want = math.ceil(max(demand, 0) / policy.concurrency - 1e-9)
    return min(max(want, policy.min_instances), policy.max_instances)


def decide(
    policy: ScalePolicy,
    serving: Sequence[InstanceState],
    starting: int,
    waiting: int,
    now: float,
) -> Decision:
    """What to do now, given the serving instances, how many are starting, and requests waiting.

    ``waiting`` counts requests the front holds because every serving
    instance is full. See the module docstring for the invariants.
    """
    if starting < 0 or waiting < 0:
        raise ValueError("starting and waiting must be ≥ 0")
    demand = sum(i.in_flight for i in serving) + waiting
    have = len(serving) + starting
    want = needed(policy, demand)
    if want > have:
        return Decision(start=want - have)
    if starting:
        return Decision()
    idle = sorted(
        (i for i in serving if i.in_flight == 0 and not i.working and i.idle_since is not None),
        key=lambda i: (i.idle_since, i.name),
    )
    expired = [i.name for i in idle if i.idle_since is not None and now - i.idle_since >= policy.idle_s]
    spare = len(serving) - max(want, policy.min_instances)
    return Decision(stop=tuple(expired[: max(spare, 0)]))


@dataclass
class Timeline:
    """Instance counts over time (monotonic seconds), as recorded; pure bookkeeping.

    ``record`` keeps only changes. Between two points the count is the
    earlier point's, so integrals and means are exact for a step function.
    """

    points: list[tuple[float, int]] = field(default_factory=list)

    def record(self, t: float, n: int) -> None:
        if self.points and t < self.points[-1][0]:
            raise ValueError("a timeline only moves forward")
        if not self.points or self.points[-1][1] != n:
            self.points.append((t, n))

    def at(self, t: float) -> int:
        """The count at time ``t`` (0 before the first point)."""
        n = 0
        for when, count in self.points:
            if when > t:
                break
            n = count
        return n

    def window(self, t0: float, t1: float) -> list[tuple[float, int]]:
        """The step function over [t0, t1], as (seconds since t0, count) points starting at 0."""
        if t1 < t0:
            raise ValueError("a window ends after it starts")
        out = [(0.0, self.at(t0))]
        for when, count in self.points:
            if t0 < when <= t1 and count != out[-1][1]:
                out.append((when - t0, count))
        return out

    def integral(self, t0: float, t1: float) -> float:
        """Instance-seconds over [t0, t1]."""
        steps = self.window(t0, t1)
        total = 0.0
        for (start, count), (end, _) in zip(steps, [*steps[1:], (t1 - t0, 0)], strict=True):
            total += count * (end - start)
        return total


@dataclass(frozen=True, slots=True)
class InstanceCounts:
    """One role's instances over a cell: the summary's ``instances[role]``."""

    max: int
    mean: float
    instance_seconds: float
    #: (seconds since the cell began, instances) at each change
    timeline: tuple[tuple[float, int], ...]


def counts(timeline: Timeline, t0: float, t1: float) -> InstanceCounts:
    """Max, time-weighted mean and instance-seconds of ``timeline`` over [t0, t1]."""
    steps = timeline.window(t0, t1)
    seconds = timeline.integral(t0, t1)
    span = t1 - t0
    return InstanceCounts(
        max=max(n for _, n in steps),
        mean=seconds / span if span > 0 else float(steps[-1][1]),
        instance_seconds=seconds,
        timeline=tuple((round(t, 3), n) for t, n in steps),
    )
