"""Did a cell measure the pattern, or the machine? The verdict from CPU samples and job timings.

A load run on one machine shares its cores between the phones (Locust and
its session agents), the services and Postgres. When the generator's event
loop is pegged, latencies and stalls are the generator's; when jobs run much
slower than their plan, every timing downstream is the host's. A reader who
is not told blames the transport, so a cell where that happened is marked
``saturated`` with the figures that say why.

Rules (each a constant below, each reported when it fires):

* the busiest load-generator process averaged ≥ 90 % of one core over the
  cell (Locust and the agents are single-threaded: one core is their limit);
* a service instance averaged ≥ 90 % of one core (same reason: one Python
  process per instance);
* the machine as a whole averaged ≥ 90 % of all its cores: everyone waited
  for CPU, whatever each process's share;
* or did so over its busiest :data:`PEAK_WINDOW_S` stretch: a long cell can
  average well under the limit while a congested phase (1,000 phones
  arriving at once, the autoscaler still starting instances) has every
  phone of that phase waiting for CPU; the whole cell's mean hid it;
* the median job ran ≥ 25 % longer than planned (start → finish, jobs that
  ran once).

Pure: samples in, verdict out; the sampling is the app's.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: Percent of one core, averaged over the cell, above which a single-threaded process is the bottleneck.
PROCESS_CPU_LIMIT = 90.0
#: Percent of all cores, averaged over the cell.
MACHINE_CPU_LIMIT = 90.0
#: Seconds over which the machine's busiest stretch is averaged (the sampler's samples in a row).
#: Half a minute: longer than a cell's start-up (Locust's imports, the phones' spawn) and than any
#: one fault window at the default scale, short against a run at ``--time-scale 1``.
PEAK_WINDOW_S = 30.0
#: Actual / planned job duration (median) above which the host, not the job, set the pace.
JOB_SLOWDOWN_LIMIT = 1.25


@dataclass(frozen=True, slots=True)
class CpuSeries:
    """One process's CPU samples over a cell, percent of one core (psutil's ``cpu_percent``)."""

    group: str  # "generator", a service role, or "postgres"
    name: str  # e.g. "locust", "agent-1234", "worker-1"
    samples: tuple[float, ...]
    #: Index, in the machine's samples, of the tick this process's first sample was taken at: a
    #: process that started mid-cell (a scale-out instance) lines up with the machine's timeline.
    first_tick: int = 0

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


@dataclass(frozen=True, slots=True)
class JobTiming:
    """A job that ran once: how long it ran and how long its plan said (same units)."""

    ran_s: float
    planned_s: float


@dataclass(frozen=True, slots=True)
class Verdict:
    saturated: bool
    #: Mean CPU (percent of one core) of the busiest generator process; None without samples.
    generator_cpu: float | None
    #: Per group: mean CPU of its busiest process (Postgres: all its processes together).
    service_cpu: dict[str, float]
    #: Mean CPU of the whole machine, percent of all cores.
    machine_cpu: float | None
    #: The machine's mean CPU over its busiest :data:`PEAK_WINDOW_S` (the whole cell if shorter).
    machine_cpu_peak: float | None
    #: Per group, its processes' CPU together over that stretch, percent of one core.
    peak_cpu: dict[str, float]
    #: Median actual/planned job duration; None when no job ran once to its end.
    job_slowdown: float | None
    reasons: list[str] = field(default_factory=list)


def job_slowdown(jobs: Iterable[JobTiming]) -> float | None:
    ratios = [j.ran_s / j.planned_s for j in jobs if j.planned_s > 0]
    return statistics.median(ratios) if ratios else None


def _group_cpu(series: Sequence[CpuSeries], summed: bool) -> float | None:
    means = [m for s in series if (m := s.mean) is not None]
    if not means:
        return None
    return sum(means) if summed else max(means)


def busiest_window(
    samples: Sequence[float], interval_s: float, window_s: float = PEAK_WINDOW_S
) -> tuple[int, int] | None:
    """``(start, width)`` of the ``window_s`` in a row of ``samples`` (one per ``interval_s``) with
    the highest mean; the whole series when shorter; None without samples."""
    if not samples:
        return None
    width = max(1, min(len(samples), round(window_s / interval_s)))
    total = sum(samples[:width])
    best, start = total, 0
    for k in range(width, len(samples)):
        total += samples[k] - samples[k - width]
        if total > best:
            best, start = total, k - width + 1
    return start, width


def cpu_in_window(series: Sequence[CpuSeries], start: int, width: int) -> dict[str, float]:
    """Each group's CPU over ticks ``start`` .. ``start + width - 1``, percent of one core, all its
    processes together: who had the machine while it was busiest (a process alive for part of the
    window counts for that part)."""
    found: dict[str, float] = {}
    for s in series:
        lo, hi = max(start, s.first_tick), min(start + width, s.first_tick + len(s.samples))
        if hi <= lo:
            continue
        used = sum(s.samples[lo - s.first_tick : hi - s.first_tick]) / width
        found[s.group] = found.get(s.group, 0.0) + used
    return {g: round(v, 1) for g, v in sorted(found.items())}


def judge(
    series: Sequence[CpuSeries],
    machine_samples: Sequence[float],
    jobs: Iterable[JobTiming],
    summed_groups: Mapping[str, bool] | None = None,
    interval_s: float = 0.5,
) -> Verdict:
    """The cell's saturation verdict; ``summed_groups`` names groups whose processes add up (Postgres);
    ``interval_s`` is the time between two machine samples."""
    summed = dict(summed_groups or {"postgres": True})
    groups: dict[str, list[CpuSeries]] = {}
    for s in series:
        groups.setdefault(s.group, []).append(s)
    generator = _group_cpu(groups.pop("generator", []), summed=False)
    services = {
        g: round(v, 1)
        for g, members in sorted(groups.items())
        if (v := _group_cpu(members, summed.get(g, False))) is not None
    }
    machine = statistics.fmean(machine_samples) if machine_samples else None
    window = busiest_window(machine_samples, interval_s)
    peak = None if window is None else sum(machine_samples[window[0] : window[0] + window[1]]) / window[1]
    peak_groups = {} if window is None else cpu_in_window(series, *window)
    slowdown = job_slowdown(jobs)
    reasons: list[str] = []
    if generator is not None and generator >= PROCESS_CPU_LIMIT:
        reasons.append(f"load generator at {generator:.0f}% of a core (limit {PROCESS_CPU_LIMIT:.0f}%)")
    for group, members in sorted(groups.items()):
        if summed.get(group, False):
            continue
        busiest = max(members, key=lambda s: s.mean or 0.0)
        if (busiest.mean or 0.0) >= PROCESS_CPU_LIMIT:
            reasons.append(
                f"{busiest.name} at {busiest.mean:.0f}% of a core (limit {PROCESS_CPU_LIMIT:.0f}%)"
            )
    if machine is not None and machine >= MACHINE_CPU_LIMIT:
        reasons.append(f"machine CPU at {machine:.0f}% of all cores (limit {MACHINE_CPU_LIMIT:.0f}%)")
    elif peak is not None and peak >= MACHINE_CPU_LIMIT:
        reasons.append(
            f"machine CPU at {peak:.0f}% of all cores over its busiest {PEAK_WINDOW_S:.0f} s "
            f"(limit {MACHINE_CPU_LIMIT:.0f}%; {machine:.0f}% over the whole cell)"
        )
    if slowdown is not None and slowdown >= JOB_SLOWDOWN_LIMIT:
        reasons.append(f"jobs ran {slowdown:.2f}× their planned duration (limit {JOB_SLOWDOWN_LIMIT:.2f}×)")
    return Verdict(
        saturated=bool(reasons),
        generator_cpu=None if generator is None else round(generator, 1),
        service_cpu=services,
        machine_cpu=None if machine is None else round(machine, 1),
        machine_cpu_peak=None if peak is None else round(peak, 1),
        peak_cpu=peak_groups,
        job_slowdown=None if slowdown is None else round(slowdown, 3),
        reasons=reasons,
    )
