"""What the runner learned about one cell while it ran, before any scoring.

The runner fills a :class:`CellResult` (where the phones' records went, the
meters the cell added, its fault windows); :mod:`progressbench.app.scoring`
turns it into a ``summary.json`` cell afterwards. Keeping the two apart lets
an interrupted run score what it has with the same code as a finished one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from progressbench.core.autoscale import InstanceCounts
from progressbench.core.events import FaultWindow, SessionRecord
from progressbench.core.saturation import CpuSeries
from progressbench.core.summary import FaultWindowSpan
from progressbench.core.timers import Timer

Meters = dict[str, dict[str, float]]


def cell_name(transport: str, profile: str) -> str:
    """A file-name-safe name of a cell (``relay:ack-at-end`` has a colon)."""
    return f"{transport.replace(':', '-')}__{profile}"


@dataclass
class CellResult:
    transport: str
    profile: str
    sessions_path: Path
    meters: Meters = field(default_factory=dict)
    complete: bool = False
    #: Sessions the cell's plan asks for (phones × jobs each).
    planned_sessions: int = 0
    seconds: float = 0.0
    started_wall_ns: int = 0
    windows: list[FaultWindow] = field(default_factory=list)
    chaos_errors: list[str] = field(default_factory=list)
    #: The cell's cross-tenant canary (progressbench.app.canary): attempts, and events it got.
    canary_probes: int = 0
    canary_foreign_events: int = 0
    #: Timers measured while the cell ran (a replacement's cold start), beside the transport's own.
    timers: list[Timer] = field(default_factory=list)
    #: CPU of the cell's processes, and of the whole machine, sampled while it ran.
    cpu: list[CpuSeries] = field(default_factory=list)
    machine_cpu: list[float] = field(default_factory=list)
    #: Per scaled service, its instances over the cell (empty without scale-out).
    instances: dict[str, InstanceCounts] = field(default_factory=dict)

    def windows_for(self, record: SessionRecord) -> list[FaultWindow]:
        """The faults that hit this phone while it watched: its cell's, and stack-wide ones."""
        return [
            w
            for w in self.windows
            if (w.cell is None or w.cell == record.cell)
            and w.start_wall_ns <= record.ended_wall_ns
            and w.end_wall_ns >= record.started_wall_ns
        ]

    def describe_windows(self) -> list[FaultWindowSpan]:
        return [
            FaultWindowSpan(
                cell=w.cell,
                kind=w.kind,
                start_s=round((w.start_wall_ns - self.started_wall_ns) / 1e9, 3),
                duration_s=round((w.end_wall_ns - w.start_wall_ns) / 1e9, 3),
                start_wall_ns=w.start_wall_ns,
            )
            for w in sorted(self.windows, key=lambda w: w.start_wall_ns)
        ]


def is_gauge(name: str) -> bool:
    """Levels, not counts: a cell reports their value, not a difference.

    ``*_peak_connections`` is a service's high-water mark since it started.
    """
    return name.endswith("_peak_connections")


def meter_delta(before: Meters, after: Meters) -> Meters:
    """Counters as what the cell added; gauges (:func:`is_gauge`) as their value at the end."""
    delta: Meters = {}
    for service, values in after.items():
        base = before.get(service, {})
        delta[service] = {
            k: round(v if is_gauge(k) else v - base.get(k, 0.0), 6)
            for k, v in values.items()
            if not k.endswith("_in_flight")
        }
    return delta
