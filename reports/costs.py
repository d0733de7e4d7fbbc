"""The cost model: measured meters x a dated price table -> dollars per 1,000 jobs.

Pure code. Prices are the marginal list prices in
``shared/reference/platform-facts.md`` §8a (read 2026-11; sources there);
free tiers are ignored because a comparison per 1,000 jobs is about marginal
cost. Time meters are measured at the run's time scale and are divided by it
to estimate real-time cost; counts (requests, messages, operations) are not.

Assumptions (not sourced facts): one vCPU and 0.5 GiB per Cloud Run
instance; the API and workers both bill as Cloud Run request-based services;
per-request 100 ms rounding is not applied (it needs per-request times).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PRICES_AS_OF = "2026-11"


@dataclass(frozen=True)
class PriceTable:
    cloud_run_vcpu_s: float = 0.000024  # request-based, per vCPU-second
    cloud_run_gib_s: float = 0.0000025  # request-based, per GiB-second
    cloud_run_per_request: float = 0.40 / 1e6
    cloud_tasks_per_op: float = 0.40 / 1e6
    supabase_per_message: float = 2.50 / 1e6
    supabase_per_peak_connection: float = 10.00 / 1000
    vcpu_per_instance: float = 1.0  # ASSUMPTION
    gib_per_instance: float = 0.5  # ASSUMPTION


DEFAULT_PRICES = PriceTable()


SECONDS_PER_MONTH = 30 * 24 * 3600


def cost_breakdown(
    meters: Mapping[str, Mapping[str, float]],
    time_scale: float,
    prices: PriceTable = DEFAULT_PRICES,
    *,
    cell_seconds: float = 0.0,
) -> dict[str, float]:
    """Dollars per cost line for one cell; ``meters`` maps service -> counter deltas.

    Monthly charges (Supabase bills the month's peak concurrent connections)
    are amortised as if the cell's load ran all month: the cell's share is
    ``monthly price × (cell's real-time duration / a 30-day month)``, where the
    real-time duration is the measured one divided by the time scale.
    """
    month_share = (cell_seconds / time_scale) / SECONDS_PER_MONTH
    lines: dict[str, float] = {}
    instance_rate = prices.vcpu_per_instance * prices.cloud_run_vcpu_s + (
        prices.gib_per_instance * prices.cloud_run_gib_s
    )
    for service, m in meters.items():
        busy = m.get("pb_billable_instance_seconds_total", 0.0) / time_scale
        requests = m.get("pb_requests_total", 0.0)
        lines[f"{service}.instance"] = busy * instance_rate
        lines[f"{service}.requests"] = requests * prices.cloud_run_per_request
        if "pb_queue_operations_total" in m:
            lines[f"{service}.queue_ops"] = m["pb_queue_operations_total"] * prices.cloud_tasks_per_op
        if "pb_realtime_messages_total" in m:
            lines[f"{service}.realtime_messages"] = (
                m["pb_realtime_messages_total"] * prices.supabase_per_message
            )
        if "pb_peak_connections" in m:
            lines[f"{service}.peak_connections"] = (
                m["pb_peak_connections"] * prices.supabase_per_peak_connection * month_share
            )
    return lines


def cost_per_1k_jobs(
    meters: Mapping[str, Mapping[str, float]],
    jobs: int,
    time_scale: float,
    prices: PriceTable = DEFAULT_PRICES,
    *,
    cell_seconds: float = 0.0,
) -> float | None:
    if jobs <= 0:
        return None
    lines = cost_breakdown(meters, time_scale, prices, cell_seconds=cell_seconds)
    return sum(lines.values()) / jobs * 1000.0
