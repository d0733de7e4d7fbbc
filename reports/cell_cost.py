"""The cost of one cell: its declared components, priced from its meters, at stated loads.

This is what a ``summary.json`` cell's ``cost`` says. Two figures, each at
a stated load:

- ``usd_per_1k_jobs``: a month at the load the cell was set to drive (its
  jobs over the phones' planned job time: :func:`planned_span`), from one job's measured
  profile and the load model of ``reports/load_curve.py``; without free
  tiers. ``breakdown`` splits it by bill line (``<item>.<charge>`` for
  usage, ``<provider>.plan:<key>`` for a plan fee).
- ``curve``: the same per-job profile priced at every load of
  :data:`CURVE_JOBS_PER_MONTH`, with and without free tiers.

Why not price the measured instance lives directly: the testbed's stack is
shared by the matrix's cells, run one after another, so an instance's idle
tail during a cell is mostly the tail of the previous cell's work (the
meters show it: ``pb_instance_tail_seconds_total``), and a cell is too short
to hold a month's steady state. One job's use, measured, and a stated load
model are what can be compared between patterns.

Pure code: meters, declarations and a price book in; numbers out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from progressbench.reports.billing import Bill
from progressbench.reports.load_curve import CurvePoint, cost_at_load, load_curve, run_jobs_per_hour
from progressbench.reports.metered import Meters, job_profiles
from progressbench.reports.prices import PriceBook, prices_as_of

from progressbench.core.billed import Billed

#: The loads every curve states a cost at, in jobs per MONTH: a side project in a free tier
#: (100) to a large app (100 M, about 139k jobs an hour).
CURVE_JOBS_PER_MONTH: tuple[float, ...] = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)

LOAD_MODEL = (
    "load model (reports/load_curve.py): Poisson arrivals all month; Cloud Run instances = "
    "ceil(mean in flight / concurrency); request-based bills time with >= 1 request in flight; an "
    "instance-based instance lives while a job's work plus the idle tail covers it; Supabase peak = "
    "mean connected clients; other modes linear in jobs; plan fees spread over the month's jobs"
)


@dataclass(frozen=True)
class CellCost:
    """A cell's cost: the run-load figure and its lines, the curve, and what it assumed."""

    usd_per_1k_jobs: float | None
    #: the load ``usd_per_1k_jobs`` is stated at (real jobs per hour)
    jobs_per_hour: float | None
    #: dollars per 1,000 jobs at that load, by bill line
    breakdown: dict[str, float]
    #: the same cell's dollars over its own window (the run-load bill's share), by bill line
    cell_usd: dict[str, float]
    curve: tuple[CurvePoint, ...]
    prices_as_of: str
    billing_assumptions: tuple[str, ...]


def assumptions(components: Sequence[Billed], book: PriceBook) -> tuple[str, ...]:
    """What the figure rests on, in words: each component's platform, the modelling choices, the load."""
    lines = [
        f"{b.item}: billed as {b.mode.value} (measured on service {b.service!r}); {b.why}" for b in components
    ]
    lines += [
        f"{key} = {s.value:g} {s.unit}: {s.why}" for key, s in sorted(book.setting.items()) if s.assumption
    ]
    lines.append(LOAD_MODEL)
    lines.append(
        "usd_per_1k_jobs and breakdown: without free tiers (paid plans, their fees, nothing included)"
    )
    return tuple(lines)


def _round(value: float | None, digits: int = 6) -> float | None:
    """Rounded, and never ``-0.0`` (a free plan's allowance can leave a float crumb below zero)."""
    return None if value is None else round(value, digits) + 0.0


def cell_cost(
    components: Sequence[Billed],
    meters: Meters,
    *,
    jobs: int,
    window_s: float,
    time_scale: float,
    book: PriceBook,
    loads_per_month: Sequence[float] = CURVE_JOBS_PER_MONTH,
    window_basis: str = "the span its sessions covered",
) -> CellCost:
    """Price one cell. ``window_s``: the span its jobs ran over, on the testbed's (scaled) clock."""
    stated = prices_as_of(book)
    notes = assumptions(components, book)
    if jobs > 0 and window_s > 0:
        real_s = window_s / time_scale
        notes += (
            f"run load: {jobs} jobs over {real_s:.0f} s of real time ({window_basis}) "
            f"= {jobs / real_s * 3600:.1f} jobs/h",
        )
    if jobs <= 0 or window_s <= 0 or not components:
        return CellCost(None, None, {}, {}, (), stated, notes)
    profiles = job_profiles(components, meters, jobs, time_scale)
    load = run_jobs_per_hour(jobs, window_s, time_scale)
    bill: Bill = cost_at_load(profiles, load, book)
    per_1k = bill.lines_per_1k_jobs() or {}
    window_real_s = window_s / time_scale
    cell_usd = {k: v * window_real_s / bill.month_s for k, v in bill.lines().items()}
    hours = book.month_s / 3600.0
    curve = load_curve(profiles, book, loads=[n / hours for n in loads_per_month])
    return CellCost(
        usd_per_1k_jobs=_round(bill.per_1k_jobs),
        jobs_per_hour=round(load, 3),
        breakdown={k: round(v, 6) + 0.0 for k, v in per_1k.items()},
        cell_usd={k: round(v, 9) for k, v in cell_usd.items()},
        curve=curve,
        prices_as_of=stated,
        billing_assumptions=notes,
    )


def planned_span(sessions: Sequence[tuple[int, float | None]]) -> float | None:
    """The run's own span if every job took its planned time: the busiest phone's planned job seconds.

    ``sessions``: ``(phone, planned job seconds)`` pairs on the testbed's clock.
    A phone runs its jobs one after another, so the phones together drive
    their jobs over the longest phone's sum. This is the load the run was
    set to drive; the measured span also holds the testbed's own overheads,
    which do not shrink with the time scale (a job at 0.1 takes 1.2-1.6 × its
    plan here, at 0.5 1.05-1.15 ×) and would make the load depend on the scale.
    ``None`` when a planned duration is unknown.
    """
    per_phone: dict[int, float] = {}
    for phone, planned in sessions:
        if planned is None or planned <= 0:
            return None
        per_phone[phone] = per_phone.get(phone, 0.0) + planned
    return max(per_phone.values()) if per_phone else None


def window_of(spans: Sequence[tuple[int, int]], fallback_s: float) -> float:
    """Seconds from the first session's start to the last one's end (``(start_ns, end_ns)`` pairs)."""
    valid = [(s, e) for s, e in spans if s > 0 and e >= s]
    if not valid:
        return fallback_s
    span = (max(e for _, e in valid) - min(s for s, _ in valid)) / 1e9
    return span if span > 0 else fallback_s


def curve_rows(curve: Sequence[CurvePoint], month_s: float) -> list[dict[str, float | None]]:
    """The curve as rows: the load (per month and per hour) and both figures."""
    return [
        {
            "jobs_per_month": round(p.jobs_per_hour * month_s / 3600.0, 3),
            "jobs_per_hour": round(p.jobs_per_hour, 6),
            "usd_per_1k_jobs_with_free_tiers": _round(p.with_free_tiers.per_1k_jobs),
            "usd_per_1k_jobs_without_free_tiers": _round(p.without_free_tiers.per_1k_jobs),
        }
        for p in curve
    ]


def by_item(breakdown: Mapping[str, float]) -> dict[str, float]:
    """Bill lines folded to their item: ``worker.vcpu`` + ``worker.memory`` -> ``worker``.

    A provider's adjustments (plan fee, allowance, package rounding, credit:
    ``supabase.plan:supabase.pro``) fold to ``<provider> plan``.
    """
    out: dict[str, float] = {}
    for label, usd in breakdown.items():
        owner, _, charge = label.partition(".")
        item = f"{owner} plan" if ":" in charge else owner
        out[item] = out.get(item, 0.0) + usd
    return out
