"""From a cell's meters to billing usage: what each billed component used, measured and per job.

The runner scrapes every service's Prometheus counters before and after a
cell (``"<service>" -> {"<meter>": delta}``). A transport declares its billed
components (``progressbench/core/billed.py``): which service each is, under
which billing mode, and which meters measure each quantity. This module
reads those quantities, generically, into

- the cell's measured usage (``reports/usage.py``), tagged with the run's
  time scale; and
- one job's profile (``reports/load_curve.py``), for the cost at any load
  (the linear modes' profiles are their usage divided by the jobs).

Nothing here knows a transport or divides by the time scale: the usage and
profile types carry the scale and convert their wall quantities once.
Processing time (the ``*_real_s`` quantities: a poll's handling, an
``after()`` dispatch) is real time at any scale, so it is expressed on the
testbed's clock (× time scale) before it joins the wall quantity; the one
conversion then gives it back unchanged. The same holds for processing
*inside* a scaled duration (``*_overhead_s``: a job's commits and hooks
between its steps' waits, :func:`on_testbed_clock`): at scale 0.1 a 0.3 s
commit would otherwise bill as 3 s of the job.

Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from progressbench.reports.load_curve import (
    InstanceBasedProfile,
    Profile,
    RequestBasedProfile,
    SupabaseProfile,
    per_job,
)
from progressbench.reports.usage import (
    CloudRunInstanceUsage,
    CloudRunJobUsage,
    CloudRunRequestUsage,
    CloudTasksUsage,
    DurableObjectUsage,
    SupabaseRealtimeUsage,
    Usage,
    VercelFunctionUsage,
)

from progressbench.core.billed import Billed, Mode, meter_value

Meters = Mapping[str, Mapping[str, float]]


def quantities(billed: Billed, meters: Meters) -> dict[str, float]:
    """Each quantity of the component: the sum of its meters on its service (≥ 0).

    A counter that went backwards (an instance restarted between two
    scrapes, or rounding) reads as 0, never as negative usage. A meter named
    ``"<service>/<meter>"`` is read on that other service (a room's active
    time holds the job's commits and hooks, which the worker measures).
    """

    def read(meter: str) -> float:
        service, _, name = meter.rpartition("/")
        return meter_value(meters.get(service or billed.service, {}), name)

    return {q: max(sum(read(m) for m in names), 0.0) for q, names in billed.meter_map().items()}


def on_testbed_clock(scaled_s: float, overhead_s: float, real_s: float, time_scale: float) -> float:
    """A duration on the testbed's clock whose one division by the scale gives its real length.

    ``scaled_s`` follows the time scale but holds ``overhead_s`` of processing
    (a job's commits and hooks between its steps' waits), which does not; and
    ``real_s`` is processing beside it. Both are real time at any scale, so
    they are put on the testbed's clock (× scale): the later division gives
    them back unchanged, while only the rest of ``scaled_s`` is stretched.
    """
    overhead = min(overhead_s, scaled_s)
    return scaled_s - overhead + (overhead + real_s) * time_scale


def measured_usage(billed: Billed, meters: Meters, time_scale: float) -> Usage:
    """What the component used over the cell, at the run's time scale."""
    q = quantities(billed, meters)
    g = q.get
    match billed.mode:
        case Mode.CLOUD_RUN_REQUEST:
            requests = g("requests", 0.0)
            in_flight = g("in_flight_s", 0.0) + g("in_flight_real_s", 0.0) * time_scale
            busy = min(g("busy_s", 0.0), in_flight)
            periods = min(g("busy_periods", 0.0), requests)
            if busy > 0 and periods == 0:
                periods = 1.0  # a busy period already open when the cell began
            return CloudRunRequestUsage(
                requests=requests,
                in_flight_s=in_flight,
                busy_s=busy,
                busy_periods=periods,
                time_scale=time_scale,
            )
        case Mode.CLOUD_RUN_INSTANCE:
            return CloudRunInstanceUsage(instance_s=g("instance_s", 0.0), time_scale=time_scale)
        case Mode.CLOUD_RUN_JOB:
            task = on_testbed_clock(g("task_s", 0.0), g("task_overhead_s", 0.0), 0.0, time_scale)
            return CloudRunJobUsage(task_s=task, time_scale=time_scale)
        case Mode.VERCEL_FUNCTION:
            return VercelFunctionUsage(
                invocations=g("invocations", 0.0),
                active_cpu_s=g("active_cpu_s", 0.0),
                wall_s=g("wall_s", 0.0) + g("wall_real_s", 0.0) * time_scale,
                time_scale=time_scale,
            )
        case Mode.SUPABASE_REALTIME:
            return SupabaseRealtimeUsage(
                messages=g("messages", 0.0),
                peak_connections=g("peak_connections", 0.0),
                time_scale=time_scale,
            )
        case Mode.DURABLE_OBJECT:
            return DurableObjectUsage(
                http_requests=g("http_requests", 0.0),
                ws_messages_in=g("ws_messages_in", 0.0),
                ws_messages_out=g("ws_messages_out", 0.0),
                active_s=on_testbed_clock(g("active_s", 0.0), g("active_overhead_s", 0.0), 0.0, time_scale),
                time_scale=time_scale,
            )
        case Mode.CLOUD_TASKS:
            return CloudTasksUsage(
                api_calls=g("api_calls", 0.0),
                delivery_attempts=g("delivery_attempts", 0.0),
                time_scale=time_scale,
            )
    raise ValueError(f"unknown billing mode {billed.mode!r}")  # pragma: no cover


def job_profile(billed: Billed, meters: Meters, jobs: float, time_scale: float) -> Profile:
    """One job's use of the component: the cell's measurement over its ``jobs`` jobs."""
    if not jobs > 0:
        raise ValueError(f"jobs must be > 0, got {jobs}")
    q = quantities(billed, meters)
    g = q.get
    match billed.mode:
        case Mode.CLOUD_RUN_REQUEST:
            requests = g("requests", 0.0) / jobs
            in_flight = (g("in_flight_s", 0.0) + g("in_flight_real_s", 0.0) * time_scale) / jobs
            return RequestBasedProfile(
                requests=requests if requests > 0 or in_flight == 0 else 1.0,
                in_flight_s=in_flight,
                time_scale=time_scale,
            )
        case Mode.CLOUD_RUN_INSTANCE:
            work = on_testbed_clock(
                g("work_s", 0.0), g("work_overhead_s", 0.0), g("work_real_s", 0.0), time_scale
            )
            return InstanceBasedProfile(busy_s=work / jobs, time_scale=time_scale)
        case Mode.SUPABASE_REALTIME:
            return SupabaseProfile(
                messages=g("messages", 0.0) / jobs,
                connection_s=g("connection_s", 0.0) / jobs,
                server_connections=g("server_connections", 0.0),
                time_scale=time_scale,
            )
        case Mode.CLOUD_RUN_JOB | Mode.VERCEL_FUNCTION | Mode.DURABLE_OBJECT | Mode.CLOUD_TASKS:
            usage = measured_usage(billed, meters, time_scale)
            assert isinstance(
                usage, CloudRunJobUsage | VercelFunctionUsage | DurableObjectUsage | CloudTasksUsage
            )
            return per_job(usage, jobs)
    raise ValueError(f"unknown billing mode {billed.mode!r}")  # pragma: no cover


def job_profiles(
    components: Sequence[Billed], meters: Meters, jobs: float, time_scale: float
) -> dict[str, Profile]:
    """Bill item -> one job's profile, for every declared component (an item named twice is refused)."""
    out: dict[str, Profile] = {}
    for billed in components:
        if billed.item in out:
            raise ValueError(f"bill item {billed.item!r} is declared twice")
        out[billed.item] = job_profile(billed, meters, jobs, time_scale)
    return out
