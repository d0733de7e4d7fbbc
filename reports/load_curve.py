"""Cost per 1,000 jobs as a function of load, from measured per-job usage.

What a job costs depends on how many other jobs share the month: how many
phones share an instance, how often an instance sits in its idle tail, how
many jobs a plan fee is spread over. So a figure per 1,000 jobs is only
comparable at a stated load. This module takes what one job uses of each
service (measured on the testbed at any time scale) and prices a month at
``jobs_per_hour``, with and without free tiers (``reports/billing.py``).

The model, and its assumptions (none of them a sourced fact):

- Jobs arrive as a Poisson process at λ = jobs_per_hour / 3600 per second,
  steadily all month (a 30-day month, ``billing.month_days``). Everything a
  job does scales with λ; the per-job usage does not change with load.
- Cloud Run instances: ``N = ceil(c / concurrency)`` with ``c`` the mean
  number of requests (or jobs) in flight, ``concurrency`` 80 (§1a); load is
  spread evenly, so each instance sees ``c / N``. Instances are not scaled
  on the instantaneous concurrency, and cold starts, startup and shutdown
  time are not billed. ``N`` steps up by whole instances, so the cost per
  job has a small sawtooth at the steps; between them it falls with load.
- Request-based billing: an instance is billed while it has ≥ 1 request in
  flight. With Poisson arrivals that is a fraction ``1 − e^(−c/N)`` of the
  time (M/G/∞: the number in flight is Poisson with mean ``c/N``), and busy
  periods start at ``λ_requests · e^(−c/N)`` per second (arrivals that find
  the instance empty). Each busy period is padded to 100 ms as an isolated
  request of the mean duration would be. Min instances are not priced here:
  an idle min instance's request-based rate is not in the price table.
- Instance-based billing: one job keeps an instance working for ``busy_s``
  (its request plus the work after the 202) and the instance then lives on
  for the idle tail (``cloud_run.idle_tail_s``, an ASSUMPTION of 900 s)
  before scale-down. An instance is alive while some job's
  ``busy_s + idle tail`` window covers it: a fraction
  ``1 − e^(−λ_i·(busy_s + idle_tail))`` of the time at ``λ_i = λ / N`` per
  instance. Min instances are alive all the time. A job holds one of the
  instance's concurrency slots while it runs, as a request would.
- Supabase Realtime: the month's peak connections are the mean number of
  connected clients at this load, ``ceil(λ · connection_s)``, plus any
  server-side subscribers. The true monthly peak of a Poisson load is
  higher (mean + a few standard deviations), so this is a lower bound.
- Everything else (Cloud Run Jobs, Vercel functions, Durable Objects,
  Cloud Tasks) is linear in the number of jobs: per-job usage × jobs.
  A Vercel function's memory is billed per invocation's wall time, as if
  each invocation had its own instance (an upper bound under Fluid compute,
  which can share an instance between invocations).
- Plan fees are spread over the month's jobs; providers a cell does not
  use are not billed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from progressbench.reports.billing import Bill, bill_month
from progressbench.reports.prices import PriceBook
from progressbench.reports.usage import (
    CloudRunInstanceUsage,
    CloudRunJobUsage,
    CloudRunRequestUsage,
    CloudTasksUsage,
    DurableObjectUsage,
    Mode,
    Quantities,
    SupabaseRealtimeUsage,
    Usage,
    VercelFunctionUsage,
    quantity,
    real_time,
    scaled,
)

#: The loads every report states a cost at, in jobs per hour.
STANDARD_LOADS: tuple[float, ...] = (10, 100, 1_000, 10_000, 100_000)

_EPS = 1e-9


@dataclass(frozen=True, kw_only=True)
class RequestBasedProfile(Quantities):
    """One job's use of a Cloud Run request-based service (an API, a worker that ACKs at the end)."""

    mode: ClassVar[Mode] = Mode.CLOUD_RUN_REQUEST

    requests: float = quantity("count")
    #: sum of the job's requests' open times; a progress stream is open for the whole job
    in_flight_s: float = quantity("wall")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.in_flight_s > 0 and self.requests == 0:
            raise ValueError("RequestBasedProfile.requests must be > 0 when in_flight_s > 0")


@dataclass(frozen=True, kw_only=True)
class InstanceBasedProfile(Quantities):
    """One job's use of a Cloud Run instance-based service (a worker that runs the job after a 202)."""

    mode: ClassVar[Mode] = Mode.CLOUD_RUN_INSTANCE

    #: how long the job keeps an instance working: its request plus the work after the response
    busy_s: float = quantity("wall")


@dataclass(frozen=True, kw_only=True)
class SupabaseProfile(Quantities):
    """One job's use of Supabase Realtime: its messages and how long its clients stay connected."""

    mode: ClassVar[Mode] = Mode.SUPABASE_REALTIME

    messages: float = quantity("count")
    #: seconds the job's own clients hold a Supabase socket (sum over its clients)
    connection_s: float = quantity("wall")
    #: sockets held whatever the load (a server or worker that subscribes)
    server_connections: float = quantity("level")


#: Per-job usage of one service; the linear modes reuse their usage types, one job's worth.
Profile = (
    RequestBasedProfile
    | InstanceBasedProfile
    | SupabaseProfile
    | CloudRunJobUsage
    | VercelFunctionUsage
    | DurableObjectUsage
    | CloudTasksUsage
)


@dataclass(frozen=True)
class Autoscaling:
    """The stated autoscaling model: slots per instance, a warm floor, the idle tail before scale-down."""

    concurrency: float
    min_instances: float
    idle_tail_s: float

    @classmethod
    def from_book(cls, book: PriceBook) -> Autoscaling:
        return cls(
            concurrency=book.value("cloud_run.concurrency"),
            min_instances=book.value("cloud_run.min_instances"),
            idle_tail_s=book.value("cloud_run.idle_tail_s"),
        )

    def instances(self, in_flight: float) -> int:
        """Instances needed for a mean of ``in_flight`` requests (0 when nothing is in flight)."""
        if in_flight <= 0:
            return 0
        return max(1, math.ceil(in_flight / self.concurrency - _EPS))


def monthly_usage(profile: Profile, jobs_per_hour: float, month_s: float, scaling: Autoscaling) -> Usage:
    """A month of one service's usage at ``jobs_per_hour``, in real time."""
    rate = jobs_per_hour / 3600.0
    jobs = rate * month_s
    p = real_time(profile)
    match p:
        case RequestBasedProfile():
            in_flight = rate * p.in_flight_s
            n = scaling.instances(in_flight)
            if n == 0:
                return CloudRunRequestUsage(requests=p.requests * jobs)
            per_instance = in_flight / n
            busy = n * -math.expm1(-per_instance)
            periods = rate * p.requests * math.exp(-per_instance)
            return CloudRunRequestUsage(
                requests=p.requests * jobs,
                in_flight_s=in_flight * month_s,
                busy_s=min(busy, in_flight) * month_s,
                busy_periods=min(periods, rate * p.requests) * month_s,
            )
        case InstanceBasedProfile():
            alive = scaling.min_instances
            n = scaling.instances(rate * p.busy_s)
            if n > 0:
                covered = rate / n * (p.busy_s + scaling.idle_tail_s)
                alive += max(0.0, n - scaling.min_instances) * -math.expm1(-covered)
            return CloudRunInstanceUsage(instance_s=alive * month_s)
        case SupabaseProfile():
            connected = rate * p.connection_s
            peak = math.ceil(connected - _EPS) if connected > 0 else 0
            return SupabaseRealtimeUsage(
                messages=p.messages * jobs, peak_connections=peak + p.server_connections
            )
        case CloudRunJobUsage() | VercelFunctionUsage() | DurableObjectUsage() | CloudTasksUsage():
            return scaled(p, jobs)
    raise TypeError(f"no load model for {type(profile).__name__}")  # pragma: no cover


def cost_at_load(
    profiles: Mapping[str, Profile],
    jobs_per_hour: float,
    book: PriceBook,
    *,
    free_tiers: bool = False,
    scaling: Autoscaling | None = None,
) -> Bill:
    """The month's bill of a cell whose services use ``profiles`` per job, at ``jobs_per_hour``."""
    if not (math.isfinite(jobs_per_hour) and jobs_per_hour >= 0):
        raise ValueError(f"jobs_per_hour must be a finite number ≥ 0, got {jobs_per_hour}")
    scale = scaling or Autoscaling.from_book(book)
    month = {name: monthly_usage(p, jobs_per_hour, book.month_s, scale) for name, p in profiles.items()}
    jobs_per_month = jobs_per_hour * book.month_s / 3600.0
    return bill_month(month, jobs_per_month=jobs_per_month, book=book, free_tiers=free_tiers)


@dataclass(frozen=True)
class CurvePoint:
    """The cost at one load, with and without free tiers."""

    jobs_per_hour: float
    with_free_tiers: Bill
    without_free_tiers: Bill

    def as_dict(self) -> dict[str, Any]:
        """A row for ``summary.json``."""
        return {
            "jobs_per_hour": self.jobs_per_hour,
            "usd_per_1k_jobs_with_free_tiers": self.with_free_tiers.per_1k_jobs,
            "usd_per_1k_jobs_without_free_tiers": self.without_free_tiers.per_1k_jobs,
            "plans_with_free_tiers": dict(self.with_free_tiers.plans),
            "plans_without_free_tiers": dict(self.without_free_tiers.plans),
        }


def load_curve(
    profiles: Mapping[str, Profile],
    book: PriceBook,
    *,
    loads: Sequence[float] = STANDARD_LOADS,
    scaling: Autoscaling | None = None,
) -> tuple[CurvePoint, ...]:
    """Cost per 1,000 jobs at each load in ``loads`` (jobs per hour), with and without free tiers."""
    return tuple(
        CurvePoint(
            load,
            cost_at_load(profiles, load, book, free_tiers=True, scaling=scaling),
            cost_at_load(profiles, load, book, free_tiers=False, scaling=scaling),
        )
        for load in loads
    )


def run_jobs_per_hour(jobs: float, measured_s: float, time_scale: float) -> float:
    """The run's own load in real jobs per hour: jobs over the cell's duration converted to real time."""
    if not (math.isfinite(measured_s) and measured_s > 0 and math.isfinite(time_scale) and time_scale > 0):
        raise ValueError("measured_s and time_scale must be finite numbers > 0")
    return jobs / (measured_s / time_scale) * 3600.0


def cost_at_run_load(
    profiles: Mapping[str, Profile],
    *,
    jobs: float,
    measured_s: float,
    time_scale: float,
    book: PriceBook,
    free_tiers: bool = False,
    scaling: Autoscaling | None = None,
) -> Bill:
    """The bill at the load the run itself drove; ``bill.jobs_per_hour`` says which load that was."""
    load = run_jobs_per_hour(jobs, measured_s, time_scale)
    return cost_at_load(profiles, load, book, free_tiers=free_tiers, scaling=scaling)


def per_job(
    usage: CloudRunJobUsage | VercelFunctionUsage | DurableObjectUsage | CloudTasksUsage, jobs: float
) -> CloudRunJobUsage | VercelFunctionUsage | DurableObjectUsage | CloudTasksUsage:
    """One job's share of a linear usage measured over ``jobs`` jobs (time scale kept)."""
    if not (math.isfinite(jobs) and jobs > 0):
        raise ValueError(f"jobs must be a finite number > 0, got {jobs}")
    return scaled(usage, 1.0 / jobs)
