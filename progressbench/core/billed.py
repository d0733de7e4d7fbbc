"""What a transport is billed for, as data: each billed component's platform mode and its meters.

A transport runs on several platforms at once (a route on Vercel, a worker
on Cloud Run, rooms on Durable Objects, a Supabase project), and which one
bills which process is a fact about the production pattern, so the
transport declares it in its registry entry (``Transport.billing``). The
cost model (``reports/``) then prices every component by its mode without
knowing any transport's name.

A :class:`Billed` component says: bill line ``item`` is the testbed
service ``service`` (its role: ``api``, ``worker``, ``rooms``...) priced
under ``mode``, and each quantity the mode needs is the sum of these
Prometheus meters of that service (``meters``). The generic meters every
service exports (``progressbench/kit/meters.py``) are the defaults
(:data:`DEFAULT_METERS`); a transport names its own meters for the modes
only its services measure (Durable Objects, Supabase, Cloud Tasks).

Pure data: no I/O, nothing priced here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Mode(StrEnum):
    """How a platform turns a service's usage into a bill."""

    CLOUD_RUN_REQUEST = "cloud-run-request-based"
    CLOUD_RUN_INSTANCE = "cloud-run-instance-based"
    CLOUD_RUN_JOB = "cloud-run-job"
    VERCEL_FUNCTION = "vercel-function"
    SUPABASE_REALTIME = "supabase-realtime"
    DURABLE_OBJECT = "durable-object"
    CLOUD_TASKS = "cloud-tasks"


#: Quantity -> the generic meters (``kit/meters.py``) that measure it, per mode. A quantity is a
#: field of the mode's usage or per-job profile (``reports/usage.py``, ``reports/load_curve.py``).
#: Durations come in two kinds: those that follow the run's time scale (a stream open for the job,
#: the job's execution) and processing time, which does not (a poll's 20 ms is 20 ms at any
#: scale); the latter are the ``*_real_s`` quantities. A ``*_overhead_s`` quantity is processing
#: time *inside* its scaled duration (a job's commits and hooks between its steps' waits): it is
#: taken out of the duration before the duration is stretched by the scale, and added back as is.
DEFAULT_METERS: dict[Mode, dict[str, tuple[str, ...]]] = {
    Mode.CLOUD_RUN_REQUEST: {
        "requests": ("pb_requests_total",),
        "in_flight_s": ("pb_held_seconds_total",),
        "in_flight_real_s": ("pb_processing_seconds_total",),
        "busy_s": ("pb_billable_instance_seconds_total",),
        "busy_periods": ("pb_busy_periods_total",),
    },
    Mode.CLOUD_RUN_INSTANCE: {
        # per job: the job's execution and any request held for it, plus its other requests (the 202)
        "work_s": ("pb_work_seconds_total", "pb_held_seconds_total"),
        # the execution's commits and hooks between its steps' waits: real at any scale
        "work_overhead_s": ("pb_work_processing_seconds_total",),
        "work_real_s": ("pb_processing_seconds_total",),
        # measured: the instances' lives under scale-down, idle tail included — the autoscaler's
        # instance-seconds when the service scaled out (each instance from its start until the
        # autoscaler stopped it after its idle period), else each instance's own metered life
        "instance_s": ("pb_autoscaled_instance_seconds_total",),
    },
    Mode.CLOUD_RUN_JOB: {
        "task_s": ("pb_work_seconds_total",),
        "task_overhead_s": ("pb_work_processing_seconds_total",),
    },
    Mode.VERCEL_FUNCTION: {
        "invocations": ("pb_requests_total",),
        "active_cpu_s": ("pb_cpu_seconds_total",),
        "wall_s": ("pb_held_invocation_seconds_total",),
        "wall_real_s": ("pb_invocation_processing_seconds_total",),
    },
    Mode.SUPABASE_REALTIME: {
        "messages": ("pb_realtime_messages_total",),
        "connection_s": ("pb_held_seconds_total",),
        "peak_connections": ("pb_peak_connections",),
    },
    Mode.DURABLE_OBJECT: {},
    Mode.CLOUD_TASKS: {},
}


#: A meter only some stacks export -> the meter that stands for it where it is missing.
FALLBACK_METERS: dict[str, str] = {
    "pb_autoscaled_instance_seconds_total": "pb_instance_tail_seconds_total",
}


def meter_value(values: Mapping[str, float], meter: str) -> float:
    """``meter`` of one service, or its :data:`FALLBACK_METERS` stand-in when it has none (0 if neither)."""
    if meter in values:
        return values[meter]
    fallback = FALLBACK_METERS.get(meter)
    return values.get(fallback, 0.0) if fallback is not None else 0.0


@dataclass(frozen=True)
class Billed:
    """One billed component of a transport: ``item`` on the bill is ``service``, priced as ``mode``."""

    #: the bill line's owner, e.g. ``api``, ``worker``, ``supabase``, ``rooms``
    item: str
    mode: Mode
    #: the testbed service (role) whose meters measure it
    service: str
    #: quantity -> meters summed for it; merged over :data:`DEFAULT_METERS` of the mode. A meter
    #: ``"<service>/<meter>"`` is read on another service of the transport.
    meters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: why this platform and mode, in one line (shown as a billing assumption)
    why: str = ""

    def meter_map(self) -> dict[str, tuple[str, ...]]:
        """Every quantity's meters: the mode's defaults, overridden by the component's own."""
        return {**DEFAULT_METERS[self.mode], **self.meters}


def billing_for(billing: Mapping[str, tuple[Billed, ...]], variant: str | None) -> tuple[Billed, ...]:
    """The components of ``variant`` (``""``/None: the default); an unlisted variant bills as the default."""
    key = variant or ""
    return tuple(billing.get(key, billing.get("", ())))
