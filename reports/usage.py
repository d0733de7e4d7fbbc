"""What each billing mode meters, as typed usage: one dataclass per mode.

A platform bills a service by one *mode*, and a mode needs particular
quantities: Cloud Run request-based billing needs the time an instance had a
request in flight, Vercel needs active CPU and the function's whole wall
duration, Supabase needs messages and a peak, and so on. Giving each mode its
own type stops a service from being priced by the wrong one (the old model
priced every service as a request-based Cloud Run instance).

Time scale. The testbed compresses every *wall duration* by its time scale
(0.1 runs a 30 s job in 3 s) but not the work done: CPU seconds, requests,
messages and delivery attempts are the same at any scale, and so are levels
such as peak connections (arrivals and durations shrink together, so
concurrency does not change). Each usage therefore records the ``time_scale``
its durations were measured at, and each field is declared as one of:

- ``wall``: a duration that the time scale compressed; divided by it, once;
- ``cpu``: CPU time; never divided;
- ``count``: a number of things; never divided;
- ``level``: a running maximum (peak connections); never divided, and not
  additive over time either (a month of it is the same level).

:func:`real_time` does the division and sets ``time_scale`` to 1, so applying
it twice changes nothing, and the pricing functions apply it themselves: a
caller tags measurements with the run's time scale and never divides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from progressbench.core.billed import Mode as Mode  # re-exported: the modes are declared in the core

Kind = Literal["wall", "cpu", "count", "level"]


def quantity(kind: Kind, default: float = 0.0) -> Any:
    """A numeric dataclass field of the given kind (see the module docstring)."""
    return field(default=default, metadata={"kind": kind})


#: What each mode bills, in words (platform-facts section in brackets).
MODES: dict[Mode, str] = {
    Mode.CLOUD_RUN_REQUEST: "instance time with at least one request in flight, each busy period rounded "
    "up to 100 ms, plus a fee per request; work after the response is CPU-throttled (§1a, §1b)",
    Mode.CLOUD_RUN_INSTANCE: "the instance's whole life, CPU always allocated, including the idle tail "
    "until scale-down; no request fee (§1a, §1b)",
    Mode.CLOUD_RUN_JOB: "task time at the instance-based rates (§1b, §1c)",
    Mode.VERCEL_FUNCTION: "invocations + active CPU + provisioned memory for the function's whole wall "
    "duration, waiting included (§3)",
    Mode.SUPABASE_REALTIME: "messages (one per listening client per change) + the month's peak "
    "connections of its own clients + the plan (§4)",
    Mode.DURABLE_OBJECT: "requests (HTTP + incoming WebSocket messages ÷ 20) + GB-s while active at "
    "128 MB per object; outgoing messages free; hibernation stops the clock (§5)",
    Mode.CLOUD_TASKS: "operations: every API call and every push delivery attempt, retries included (§2)",
}


@dataclass(frozen=True, kw_only=True)
class Quantities:
    """Base of every usage and per-job profile: validated numbers plus their time scale."""

    #: the time scale the ``wall`` fields were measured at (1.0 = real time)
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError(f"{name}.time_scale must be a finite number > 0, got {self.time_scale}")
        for f in dataclasses.fields(self):
            if "kind" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}.{f.name} must be a finite number ≥ 0, got {value!r}")


Q = TypeVar("Q", bound=Quantities)


def kinds(quantities: Quantities) -> dict[str, Kind]:
    """Field name -> kind, for the quantities of a usage or profile."""
    return {f.name: f.metadata["kind"] for f in dataclasses.fields(quantities) if "kind" in f.metadata}


def real_time(quantities: Q) -> Q:
    """The same quantities in real time: ``wall`` fields ÷ time scale, nothing else touched.

    Idempotent: the result has ``time_scale = 1``, so a second call divides by 1.
    """
    scale = quantities.time_scale
    changes: dict[str, Any] = {
        n: getattr(quantities, n) / scale for n, k in kinds(quantities).items() if k == "wall"
    }
    return dataclasses.replace(quantities, time_scale=1.0, **changes)


def scaled(quantities: Q, factor: float) -> Q:
    """Additive quantities × ``factor`` (a month of a measured window, one job of a cell); levels kept."""
    if not (math.isfinite(factor) and factor >= 0):
        raise ValueError(f"scale factor must be a finite number ≥ 0, got {factor}")
    changes: dict[str, Any] = {
        n: getattr(quantities, n) * factor for n, k in kinds(quantities).items() if k != "level"
    }
    return dataclasses.replace(quantities, **changes)


@dataclass(frozen=True, kw_only=True)
class CloudRunRequestUsage(Quantities):
    """A Cloud Run service under request-based billing (the default billing setting).

    ``busy_s`` is what the meters call billable instance-seconds: time with at
    least one request in flight, summed over instances. The 100 ms rounding
    applies to each busy period in *real* time, so it is done when pricing,
    after :func:`real_time`, never on compressed periods. With only totals
    known, each busy period is padded as an isolated request of the mean
    duration (``in_flight_s / requests``) would be: exact when requests do
    not overlap (low load), and negligible when they do (long busy periods).
    """

    mode: ClassVar[Mode] = Mode.CLOUD_RUN_REQUEST

    requests: float = quantity("count")
    #: sum of every request's (or stream's) open time: the meters' connection-seconds
    in_flight_s: float = quantity("wall")
    #: time with ≥ 1 request in flight (unrounded)
    busy_s: float = quantity("wall")
    #: how many separate busy periods ``busy_s`` is made of (each starts when 0 -> 1 in flight)
    busy_periods: float = quantity("count")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.busy_s > self.in_flight_s * (1 + 1e-9) + 1e-12:
            raise ValueError("CloudRunRequestUsage.busy_s cannot exceed in_flight_s")
        if self.busy_periods > self.requests * (1 + 1e-9):
            raise ValueError("CloudRunRequestUsage.busy_periods cannot exceed requests")
        if self.busy_s > 0 and self.busy_periods == 0:
            raise ValueError("CloudRunRequestUsage.busy_periods must be > 0 when busy_s > 0")


@dataclass(frozen=True, kw_only=True)
class CloudRunInstanceUsage(Quantities):
    """A Cloud Run service under instance-based billing: needed for work after the response (202-first)."""

    mode: ClassVar[Mode] = Mode.CLOUD_RUN_INSTANCE

    #: instance lifetime summed over instances, idle tail until scale-down included
    instance_s: float = quantity("wall")


@dataclass(frozen=True, kw_only=True)
class CloudRunJobUsage(Quantities):
    """A Cloud Run Job: billed for task time (every attempt) at the instance-based rates."""

    mode: ClassVar[Mode] = Mode.CLOUD_RUN_JOB

    task_s: float = quantity("wall")


@dataclass(frozen=True, kw_only=True)
class VercelFunctionUsage(Quantities):
    """A Vercel function (Fluid / Active CPU pricing).

    ``active_cpu_s`` is CPU time and is *not* divided by the time scale; memory
    is billed for ``wall_s``, the functions' whole wall duration (a naive SSE
    handler waits on the job most of that time and pays memory for all of it).
    """

    mode: ClassVar[Mode] = Mode.VERCEL_FUNCTION

    invocations: float = quantity("count")
    active_cpu_s: float = quantity("cpu")
    #: sum over invocations of each one's wall duration, streaming and waiting included
    wall_s: float = quantity("wall")


@dataclass(frozen=True, kw_only=True)
class SupabaseRealtimeUsage(Quantities):
    """Supabase Realtime: messages plus the month's peak connections of THIS service's own clients.

    ``peak_connections`` is a level: put here only the sockets that connect
    to Supabase (the phones watching a realtime job, and any server that
    subscribes), never another transport's connections.
    """

    mode: ClassVar[Mode] = Mode.SUPABASE_REALTIME

    messages: float = quantity("count")
    peak_connections: float = quantity("level")


@dataclass(frozen=True, kw_only=True)
class DurableObjectUsage(Quantities):
    """Durable Object rooms (PartyKit deployed cloud-prem), one object per job's room."""

    mode: ClassVar[Mode] = Mode.DURABLE_OBJECT

    http_requests: float = quantity("count")
    ws_messages_in: float = quantity("count")
    #: free, counted so the bill shows it
    ws_messages_out: float = quantity("count")
    #: sum over objects of the time each was active (not hibernated)
    active_s: float = quantity("wall")


@dataclass(frozen=True, kw_only=True)
class CloudTasksUsage(Quantities):
    """Cloud Tasks: every API call and every push delivery attempt is an operation (tasks < 32 KB)."""

    mode: ClassVar[Mode] = Mode.CLOUD_TASKS

    api_calls: float = quantity("count")
    delivery_attempts: float = quantity("count")


Usage = (
    CloudRunRequestUsage
    | CloudRunInstanceUsage
    | CloudRunJobUsage
    | VercelFunctionUsage
    | SupabaseRealtimeUsage
    | DurableObjectUsage
    | CloudTasksUsage
)
