"""Usage -> dollars the way each platform bills it: line items, plans, allowances, per 1,000 jobs.

Two steps, because the two kinds of charge behave differently:

1. :func:`price_usage` prices one service's usage under its billing mode at
   list price: named line items, no allowance, no plan, no package rounding.
   A ``level`` quantity (Supabase peak connections) is priced per month.
2. :func:`bill_month` prices a month of a whole cell (several services): it
   sums the line items per meter, picks each provider's plan, subtracts
   what the plan includes, rounds packages (Supabase messages come in whole
   millions), applies the plan's credit and adds its fee, and shows each of
   these as its own adjustment line, so items + adjustments = the bill.

A month is the unit because the platforms bill by the month: plan fees and
peak connections are monthly, allowances reset monthly. A cost per 1,000
jobs is therefore only meaningful at a stated load (jobs per hour): the fee
of a plan is spread over that month's jobs. :func:`bill_measured` scales a
measured window to a month at the same load (additive quantities × month /
window; levels as they are); ``reports/load_curve.py`` builds a month from
per-job usage at any load.

Free tiers. ``free_tiers=False`` (the default) prices each provider's paid
plan: its fee, nothing included, no credit; free allowances are per account
and shared with everything else it runs, so a comparison should not depend
on them. ``free_tiers=True`` picks, per provider, the cheapest plan allowed
to carry the month: a free plan (``hard_limits``) only while every quantity
fits its inclusions, else a paid plan with its inclusions and credit.
Only providers the cell actually uses are billed at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from progressbench.reports.prices import Meter, Plan, PriceBook
from progressbench.reports.usage import (
    CloudRunInstanceUsage,
    CloudRunJobUsage,
    CloudRunRequestUsage,
    CloudTasksUsage,
    DurableObjectUsage,
    SupabaseRealtimeUsage,
    Usage,
    VercelFunctionUsage,
    real_time,
    scaled,
)

#: relative slack when rounding up, so 0.1 + 0.2 s is billed as 0.3 s, not 0.4 s
_EPS = 1e-9


def round_up(value: float, step: float) -> float:
    """``value`` rounded up to a whole number of ``step`` (float noise below 1e-9 steps ignored)."""
    if value <= 0:
        return 0.0
    return math.ceil(value / step - _EPS) * step


@dataclass(frozen=True)
class LineItem:
    """One line of a bill: ``quantity`` of ``meter`` (in its unit) costing ``usd``.

    ``owner`` is the service for a usage line, the provider for an
    adjustment (plan fee, allowance, package rounding, credit).
    """

    owner: str
    name: str
    meter: str
    quantity: float
    usd: float

    @property
    def label(self) -> str:
        return f"{self.owner}.{self.name}"


def _item(owner: str, name: str, meter: str, quantity: float, book: PriceBook) -> LineItem:
    return LineItem(owner, name, meter, quantity, quantity * book.meter[meter].unit_price)


def request_based_billable_s(usage: CloudRunRequestUsage, rounding_s: float) -> float:
    """Billable instance-seconds: busy time plus each busy period's rounding up to ``rounding_s``.

    The usage must be in real time. Each period is padded as an isolated
    request of the mean duration would be (see ``CloudRunRequestUsage``).
    """
    if usage.requests == 0 or usage.busy_s == 0:
        return 0.0
    mean_request_s = usage.in_flight_s / usage.requests
    pad = round_up(mean_request_s, rounding_s) - mean_request_s
    return usage.busy_s + usage.busy_periods * max(pad, 0.0)


def price_usage(service: str, usage: Usage, book: PriceBook) -> tuple[LineItem, ...]:
    """List-price line items for one service's usage under its billing mode.

    Wall durations are converted to real time here (once; see
    ``reports/usage.py``), so pass measurements tagged with their time scale.
    """
    u = real_time(usage)
    vcpu, gib = book.value("cloud_run.vcpu_per_instance"), book.value("cloud_run.gib_per_instance")
    match u:
        case CloudRunRequestUsage():
            billable = request_based_billable_s(u, book.value("cloud_run.rounding_s"))
            return (
                _item(service, "vcpu", "cloud_run.request.vcpu_s", billable * vcpu, book),
                _item(service, "memory", "cloud_run.request.gib_s", billable * gib, book),
                _item(service, "requests", "cloud_run.request.requests", u.requests, book),
            )
        case CloudRunInstanceUsage() | CloudRunJobUsage():
            seconds = u.instance_s if isinstance(u, CloudRunInstanceUsage) else u.task_s
            return (
                _item(service, "vcpu", "cloud_run.instance.vcpu_s", seconds * vcpu, book),
                _item(service, "memory", "cloud_run.instance.gib_s", seconds * gib, book),
            )
        case VercelFunctionUsage():
            memory_gb_s = u.wall_s * book.value("vercel.memory_gb")
            return (
                _item(service, "invocations", "vercel.invocations", u.invocations, book),
                _item(service, "active_cpu", "vercel.active_cpu_s", u.active_cpu_s, book),
                _item(service, "memory", "vercel.memory_gb_s", memory_gb_s, book),
            )
        case SupabaseRealtimeUsage():
            return (
                _item(service, "messages", "supabase.realtime.messages", u.messages, book),
                _item(
                    service,
                    "peak_connections",
                    "supabase.realtime.peak_connections",
                    u.peak_connections,
                    book,
                ),
            )
        case DurableObjectUsage():
            requests = u.http_requests + u.ws_messages_in / book.value(
                "cloudflare.do.ws_messages_per_request"
            )
            gb_s = u.active_s * book.value("cloudflare.do.gb_per_object")
            return (
                _item(service, "requests", "cloudflare.do.requests", requests, book),
                _item(service, "duration", "cloudflare.do.gb_s", gb_s, book),
                _item(service, "ws_messages_out", "cloudflare.do.ws_messages_out", u.ws_messages_out, book),
            )
        case CloudTasksUsage():
            return (
                _item(
                    service, "operations", "cloud_tasks.operations", u.api_calls + u.delivery_attempts, book
                ),
            )
    raise TypeError(f"no billing mode for {type(usage).__name__}")  # pragma: no cover


@dataclass(frozen=True)
class Bill:
    """A month of a cell at one load: usage lines at list price, then the provider adjustments."""

    free_tiers: bool
    jobs_per_month: float
    month_s: float
    items: tuple[LineItem, ...]
    adjustments: tuple[LineItem, ...]
    #: provider -> the plan priced
    plans: Mapping[str, str]

    @property
    def month_usd(self) -> float:
        return sum(i.usd for i in self.items) + sum(a.usd for a in self.adjustments)

    @property
    def jobs_per_hour(self) -> float:
        return self.jobs_per_month / (self.month_s / 3600.0)

    @property
    def per_1k_jobs(self) -> float | None:
        """Dollars per 1,000 jobs at this load; ``None`` when the month has no jobs."""
        if self.jobs_per_month <= 0:
            return None
        return self.month_usd / self.jobs_per_month * 1000.0

    def usd_over(self, real_s: float) -> float:
        """This load's share of the month for a window of ``real_s`` real seconds."""
        return self.month_usd * real_s / self.month_s

    def lines(self) -> dict[str, float]:
        """Dollars per month by line label (``service.item`` or ``provider.adjustment``)."""
        out: dict[str, float] = {}
        for line in (*self.items, *self.adjustments):
            out[line.label] = out.get(line.label, 0.0) + line.usd
        return out

    def lines_per_1k_jobs(self) -> dict[str, float] | None:
        if self.jobs_per_month <= 0:
            return None
        return {k: v / self.jobs_per_month * 1000.0 for k, v in self.lines().items()}


def _billed_quantity(meter: Meter, quantity: float) -> float:
    """The quantity charged: whole packages if the meter sells them (Supabase messages by the million)."""
    return round_up(quantity, meter.package) if meter.package is not None else quantity


def _plan_lines(
    provider: str, key: str, plan: Plan, totals: Mapping[str, float], book: PriceBook, free_tiers: bool
) -> list[LineItem] | None:
    """Adjustment lines for pricing ``totals`` under ``plan``; ``None`` if the plan cannot carry them."""
    members = book.value("vercel.members") if plan.per_member else 1.0
    lines = [LineItem(provider, f"plan:{key}", key, members, plan.fee_month_usd * members)]
    usage_usd = 0.0
    for name, quantity in totals.items():
        meter = book.meter[name]
        included = book.included_per_month(plan, name) if free_tiers else 0.0
        # a free meter (outgoing WebSocket messages) never exhausts a free plan
        if plan.hard_limits and meter.unit_price > 0 and quantity > included * (1 + _EPS):
            return None
        over = max(quantity - included, 0.0)
        billed = _billed_quantity(meter, over)
        usage_usd += billed * meter.unit_price
        if over < quantity:
            free = quantity - over
            lines.append(LineItem(provider, f"included:{name}", name, -free, -free * meter.unit_price))
        if billed > over:
            extra = billed - over
            lines.append(
                LineItem(provider, f"package_rounding:{name}", name, extra, extra * meter.unit_price)
            )
    credit = min(plan.credit_usd, usage_usd) if free_tiers else 0.0
    if credit > 0:
        lines.append(LineItem(provider, f"credit:{key}", key, 1.0, -credit))
    return lines


def bill_month(
    usages: Mapping[str, Usage], *, jobs_per_month: float, book: PriceBook, free_tiers: bool = False
) -> Bill:
    """Price a month of a cell: ``usages`` maps service -> that service's usage over the month."""
    if not (math.isfinite(jobs_per_month) and jobs_per_month >= 0):
        raise ValueError(f"jobs_per_month must be a finite number ≥ 0, got {jobs_per_month}")
    items = tuple(item for service, usage in usages.items() for item in price_usage(service, usage, book))
    totals: dict[str, dict[str, float]] = {}
    for item in items:
        provider = book.meter[item.meter].provider
        per_meter = totals.setdefault(provider, {})
        per_meter[item.meter] = per_meter.get(item.meter, 0.0) + item.quantity
    adjustments: list[LineItem] = []
    plans: dict[str, str] = {}
    for provider in sorted(totals):
        if free_tiers:
            candidates = book.plans_of(provider)
        else:
            candidates = [book.paid_plan(provider)]
        best: tuple[float, str, list[LineItem]] | None = None
        for key, plan in candidates:
            lines = _plan_lines(provider, key, plan, totals[provider], book, free_tiers)
            if lines is None:
                continue
            cost = sum(line.usd for line in lines)
            if best is None or cost < best[0] - 1e-12:
                best = (cost, key, lines)
        assert best is not None, "a paid plan always carries the usage"  # the loader checks paid plans
        plans[provider] = best[1]
        adjustments.extend(best[2])
    return Bill(free_tiers, jobs_per_month, book.month_s, items, tuple(adjustments), plans)


def bill_measured(
    usages: Mapping[str, Usage],
    *,
    jobs: float,
    measured_s: float,
    time_scale: float,
    book: PriceBook,
    free_tiers: bool = False,
) -> Bill:
    """Price what a cell measured, as if its load ran for a whole month.

    ``measured_s`` is the cell's duration on the testbed's clock and
    ``time_scale`` the run's; each usage converts its own wall durations (it
    carries its time scale). Additive quantities are scaled to a month;
    levels (peak connections) are kept as measured. ``bill.usd_over(real_s)``
    gives the window's own share.
    """
    if not (math.isfinite(measured_s) and measured_s > 0 and math.isfinite(time_scale) and time_scale > 0):
        raise ValueError("measured_s and time_scale must be finite numbers > 0")
    real_s = measured_s / time_scale
    factor = book.month_s / real_s
    monthly: dict[str, Usage] = {name: scaled(real_time(u), factor) for name, u in usages.items()}
    return bill_month(monthly, jobs_per_month=jobs * factor, book=book, free_tiers=free_tiers)
