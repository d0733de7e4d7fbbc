"""From a cell's meters to its cost: declared components, measured usage, per-job profiles, stated loads.

Prices as in test_billing.py: an instance-based Cloud Run instance-second is
0.000018 + 0.5 × 0.000002 = $0.000019; request-based 0.000024 + 0.5 × 0.0000025
= $0.00002525 plus $0.40 per million requests; a month is 2,592,000 s.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest
from progressbench.reports.cell_cost import (
    CURVE_JOBS_PER_MONTH,
    by_item,
    cell_cost,
    curve_rows,
    planned_span,
    window_of,
)
from progressbench.reports.load_curve import InstanceBasedProfile, RequestBasedProfile, SupabaseProfile
from progressbench.reports.metered import (
    job_profile,
    job_profiles,
    measured_usage,
    on_testbed_clock,
    quantities,
)
from progressbench.reports.prices import load_prices
from progressbench.reports.usage import (
    CloudRunInstanceUsage,
    CloudRunJobUsage,
    CloudRunRequestUsage,
    CloudTasksUsage,
    DurableObjectUsage,
    SupabaseRealtimeUsage,
    VercelFunctionUsage,
    real_time,
)
from progressbench.transports.registry import REGISTRY

from progressbench.core.billed import DEFAULT_METERS, Billed, Mode, billing_for
from progressbench.core.config import RunConfig

BOOK = load_prices()
MONTH_S = 2_592_000.0
INSTANCE_S_USD = 0.000019

API = Billed("api", Mode.CLOUD_RUN_REQUEST, "api")
WORKER = Billed("worker", Mode.CLOUD_RUN_INSTANCE, "worker")
VERCEL = Billed("api", Mode.VERCEL_FUNCTION, "api")
SUPABASE = Billed("supabase", Mode.SUPABASE_REALTIME, "realtime")
ROOMS = Billed(
    "rooms",
    Mode.DURABLE_OBJECT,
    "rooms",
    meters={
        "http_requests": ("publishes", "joins"),
        "ws_messages_in": ("in",),
        "ws_messages_out": ("out",),
        "active_s": ("active",),
    },
)
QUEUE = Billed("queue", Mode.CLOUD_TASKS, "queue", meters={"api_calls": ("ops",)})


# ---------------------------------------------------------------- declarations


def test_a_component_reads_its_modes_default_meters_unless_it_names_its_own() -> None:
    assert API.meter_map() == DEFAULT_METERS[Mode.CLOUD_RUN_REQUEST]
    own = Billed("worker", Mode.CLOUD_RUN_INSTANCE, "worker", meters={"work_s": ("x",)})
    assert own.meter_map()["work_s"] == ("x",)
    assert own.meter_map()["instance_s"] == DEFAULT_METERS[Mode.CLOUD_RUN_INSTANCE]["instance_s"]


def test_an_unlisted_variant_bills_as_the_default() -> None:
    billing = {"": (API,), "ack-at-end": (WORKER,)}
    assert billing_for(billing, None) == (API,)
    assert billing_for(billing, "browser") == (API,)
    assert billing_for(billing, "ack-at-end") == (WORKER,)
    assert billing_for({}, None) == ()


@pytest.mark.parametrize("name", [n for t in REGISTRY.values() for n in t.names])
def test_every_transport_declares_what_its_platforms_bill(name: str) -> None:
    """Each variant bills something; each component reads a service the transport runs."""
    base, _, variant = name.partition(":")
    transport = REGISTRY[base]
    components = billing_for(transport.billing, variant or None)
    assert components, f"{name} declares no billed component"
    services = {"api", "worker"} | {s.role for s in transport.services}
    items = [b.item for b in components]
    assert len(items) == len(set(items)), f"{name}: an item is declared twice"
    for b in components:
        assert b.service in services, f"{name}: {b.item} reads unknown service {b.service!r}"
        assert b.why, f"{name}: {b.item} says not why it is billed so"
        assert all(b.meter_map().values()), f"{name}: {b.item} has a quantity without a meter"


def test_only_realtime_declares_supabase_and_only_relay_rooms() -> None:
    """The issue's double-billing: no component is priced as an instance of a stand-in service."""
    modes = {t.name: {b.mode for bs in t.billing.values() for b in bs} for t in REGISTRY.values()}
    assert [n for n, m in modes.items() if Mode.SUPABASE_REALTIME in m] == ["realtime"]
    assert [n for n, m in modes.items() if Mode.DURABLE_OBJECT in m] == ["relay"]
    for t in REGISTRY.values():
        for b in (b for bs in t.billing.values() for b in bs):
            if b.service not in ("api", "worker"):
                assert b.mode not in (Mode.CLOUD_RUN_REQUEST, Mode.CLOUD_RUN_INSTANCE), (t.name, b)


# ---------------------------------------------------------------- meters -> usage and profiles


def test_quantities_sum_the_declared_meters_and_never_go_negative() -> None:
    meters = {"rooms": {"publishes": 30.0, "joins": 4.0, "in": -1.0, "out": 120.0, "active": 2.0}}
    assert quantities(ROOMS, meters) == {
        "http_requests": 34.0,
        "ws_messages_in": 0.0,
        "ws_messages_out": 120.0,
        "active_s": 2.0,
    }
    assert quantities(ROOMS, {}) == dict.fromkeys(
        ("http_requests", "ws_messages_in", "ws_messages_out", "active_s"), 0.0
    )


def test_measured_usage_per_mode() -> None:
    meters = {
        "api": {
            "pb_requests_total": 8.0,
            "pb_held_seconds_total": 3.0,
            "pb_processing_seconds_total": 10.0,  # real seconds: 1.0 on the testbed's clock at 0.1
            "pb_billable_instance_seconds_total": 2.5,
            "pb_busy_periods_total": 3.0,
            "pb_cpu_seconds_total": 0.2,
            "pb_held_invocation_seconds_total": 4.0,
            "pb_invocation_processing_seconds_total": 10.0,
        },
        "worker": {"pb_instance_tail_seconds_total": 60.0, "pb_work_seconds_total": 10.0},
        "realtime": {"pb_realtime_messages_total": 40.0, "pb_peak_connections": 4.0},
        "rooms": {"publishes": 30.0, "joins": 4.0, "in": 2.0, "out": 120.0, "active": 9.0},
        "queue": {"ops": 8.0},
    }
    assert measured_usage(API, meters, 0.1) == CloudRunRequestUsage(
        requests=8, in_flight_s=4, busy_s=2.5, busy_periods=3, time_scale=0.1
    )
    assert measured_usage(WORKER, meters, 0.1) == CloudRunInstanceUsage(instance_s=60, time_scale=0.1)
    assert measured_usage(VERCEL, meters, 0.1) == VercelFunctionUsage(
        invocations=8, active_cpu_s=0.2, wall_s=5, time_scale=0.1
    )
    assert measured_usage(SUPABASE, meters, 0.1) == SupabaseRealtimeUsage(
        messages=40, peak_connections=4, time_scale=0.1
    )
    assert measured_usage(ROOMS, meters, 0.1) == DurableObjectUsage(
        http_requests=34, ws_messages_in=2, ws_messages_out=120, active_s=9, time_scale=0.1
    )
    assert measured_usage(QUEUE, meters, 0.1) == CloudTasksUsage(api_calls=8, time_scale=0.1)


def test_a_busy_period_open_when_the_cell_began_is_still_one_period() -> None:
    meters = {"api": {"pb_requests_total": 1.0, "pb_held_seconds_total": 2.0}}
    meters["api"]["pb_billable_instance_seconds_total"] = 2.0
    usage = measured_usage(API, meters, 1.0)
    assert isinstance(usage, CloudRunRequestUsage)
    assert usage.busy_periods == 1


def test_job_profiles_divide_by_jobs_and_keep_the_time_scale() -> None:
    meters = {
        "api": {"pb_requests_total": 8.0, "pb_held_seconds_total": 3.0, "pb_processing_seconds_total": 20.0},
        "worker": {"pb_work_seconds_total": 10.0, "pb_processing_seconds_total": 8.0},
        "realtime": {"pb_realtime_messages_total": 40.0, "pb_held_seconds_total": 12.0},
    }
    # processing seconds are real: 20 s x 0.05 = 1 s on the testbed's clock, 8 s -> 0.4 s
    assert job_profile(API, meters, 4, 0.05) == RequestBasedProfile(
        requests=2, in_flight_s=1, time_scale=0.05
    )
    assert job_profile(WORKER, meters, 4, 0.05) == InstanceBasedProfile(busy_s=2.6, time_scale=0.05)
    assert job_profile(SUPABASE, meters, 4, 0.05) == SupabaseProfile(
        messages=10, connection_s=3, time_scale=0.05
    )
    with pytest.raises(ValueError, match="twice"):
        job_profiles([API, API], meters, 4, 0.05)
    with pytest.raises(ValueError, match="jobs"):
        job_profile(API, meters, 0, 0.05)


# ---------------------------------------------------------------- the cell's cost


def _background_cell(scale: float) -> dict[str, dict[str, float]]:
    """One 30 s (real) job on an instance-based worker, measured at ``scale``."""
    return {"worker": {"pb_work_seconds_total": 30.0 * scale}}


def test_cell_cost_by_hand_one_job_an_hour_on_an_instance_based_worker() -> None:
    """1 job in 3,600 s real: λ = 1/3600; the instance lives while (30 s + 900 s tail) covers it.

    alive = 1 − e^(−930/3600) of the month; 720 jobs a month.
    """
    alive = -math.expm1(-930 / 3600)
    expected = alive * MONTH_S * INSTANCE_S_USD / 720 * 1000
    for scale in (0.1, 0.5, 1.0):
        cost = cell_cost(
            [WORKER], _background_cell(scale), jobs=1, window_s=3600 * scale, time_scale=scale, book=BOOK
        )
        assert cost.jobs_per_hour == pytest.approx(1.0)
        assert cost.usd_per_1k_jobs == pytest.approx(expected, rel=1e-5)
        assert sum(cost.breakdown.values()) == pytest.approx(expected, rel=1e-5)
        assert set(by_item(cost.breakdown)) >= {"worker"}
        # the cell's own dollars: one hour of the month
        assert sum(cost.cell_usd.values()) == pytest.approx(expected / 1000 * 720 * 3600 / MONTH_S, rel=1e-4)


def test_cell_cost_states_every_figure_at_a_load() -> None:
    cost = cell_cost(
        [API, WORKER], {"api": {"pb_requests_total": 4.0}}, jobs=4, window_s=10, time_scale=0.1, book=BOOK
    )
    assert cost.jobs_per_hour == pytest.approx(4 / 100 * 3600)
    rows = curve_rows(cost.curve, BOOK.month_s)
    assert [r["jobs_per_month"] for r in rows] == pytest.approx(list(CURVE_JOBS_PER_MONTH))
    for row in rows:
        assert row["usd_per_1k_jobs_with_free_tiers"] is not None
        assert row["usd_per_1k_jobs_without_free_tiers"] is not None
        assert row["usd_per_1k_jobs_with_free_tiers"] <= row["usd_per_1k_jobs_without_free_tiers"] + 1e-12
    assert cost.prices_as_of == "2026-11"
    assert any("api: billed as cloud-run-request-based" in a for a in cost.billing_assumptions)
    assert any("cloud_run.idle_tail_s" in a for a in cost.billing_assumptions)


def test_a_cell_without_jobs_or_components_has_no_figure() -> None:
    empty = cell_cost([API], {}, jobs=0, window_s=10, time_scale=1.0, book=BOOK)
    assert empty.usd_per_1k_jobs is None and empty.jobs_per_hour is None and empty.curve == ()
    assert cell_cost([], {}, jobs=3, window_s=10, time_scale=1.0, book=BOOK).usd_per_1k_jobs is None


def test_the_same_cell_at_two_time_scales_costs_the_same() -> None:
    """Held time and work scale; counts, CPU and processing time do not: 0.1 and 0.5 agree (item 4)."""

    def cell(scale: float) -> dict[str, dict[str, float]]:
        return {
            "api": {
                "pb_requests_total": 40.0,
                "pb_held_seconds_total": 200 * scale,
                "pb_processing_seconds_total": 1.5,
                "pb_billable_instance_seconds_total": 100 * scale,
                "pb_busy_periods_total": 30.0,
                "pb_cpu_seconds_total": 0.3,
                "pb_held_invocation_seconds_total": 210 * scale,
                "pb_invocation_processing_seconds_total": 2.0,
            },
            "worker": {
                "pb_work_seconds_total": 400 * scale,
                "pb_processing_seconds_total": 0.2,
                "pb_instance_tail_seconds_total": 1500 * scale,
            },
        }

    for components in ([API, WORKER], [VERCEL, WORKER]):
        a = cell_cost(components, cell(0.1), jobs=8, window_s=120 * 0.1, time_scale=0.1, book=BOOK)
        b = cell_cost(components, cell(0.5), jobs=8, window_s=120 * 0.5, time_scale=0.5, book=BOOK)
        assert a.usd_per_1k_jobs == pytest.approx(b.usd_per_1k_jobs, rel=1e-9)
        assert a.breakdown == pytest.approx(b.breakdown, rel=1e-6)


def test_window_is_first_start_to_last_end() -> None:
    assert window_of([(1_000_000_000, 3_000_000_000), (2_000_000_000, 5_500_000_000)], 99.0) == 4.5
    assert window_of([], 99.0) == 99.0
    assert window_of([(0, 0)], 7.0) == 7.0


def test_a_price_file_override_reaches_the_meters_and_the_bill(tmp_path: Path) -> None:
    """``--prices``: a 60 s idle tail is what the services meter lives by, and a low load gets cheaper."""
    from progressbench.app.run import with_billing_timing

    text = (resources.files("progressbench.reports") / "prices.toml").read_text()
    start = text.index('[setting."cloud_run.idle_tail_s"]')
    text = text[:start] + text[start:].replace("value = 900", "value = 60", 1)
    path = tmp_path / "prices.toml"
    path.write_text(text)
    book = load_prices(path)
    config = with_billing_timing(RunConfig(transports=("polling",)), book)
    assert config.timing.scale_down_idle_s == 60
    short = cell_cost([WORKER], _background_cell(1.0), jobs=1, window_s=3600, time_scale=1.0, book=book)
    long = cell_cost([WORKER], _background_cell(1.0), jobs=1, window_s=3600, time_scale=1.0, book=BOOK)
    assert short.usd_per_1k_jobs is not None and long.usd_per_1k_jobs is not None
    assert short.usd_per_1k_jobs == pytest.approx(
        -math.expm1(-90 / 3600) * MONTH_S * INSTANCE_S_USD / 720 * 1000
    )
    assert short.usd_per_1k_jobs < long.usd_per_1k_jobs


def test_planned_span_is_the_busiest_phones_planned_job_time() -> None:
    """Phone 0 runs 3 s + 4 s, phone 1 runs 5 s: together they drive 3 jobs over 7 s."""
    assert planned_span([(0, 3.0), (1, 5.0), (0, 4.0)]) == 7.0
    assert planned_span([(0, 3.0), (1, None)]) is None
    assert planned_span([]) is None


def test_the_run_load_is_stated_in_the_assumptions() -> None:
    cost = cell_cost(
        [WORKER], _background_cell(0.1), jobs=2, window_s=36, time_scale=0.1, book=BOOK, window_basis="plan"
    )
    assert cost.billing_assumptions[-1] == "run load: 2 jobs over 360 s of real time (plan) = 20.0 jobs/h"


def test_processing_inside_a_scaled_duration_is_taken_out_before_the_stretch() -> None:
    """5 s measured of which 2 s processing, plus 1 s processing beside it, at 0.1: 3 + 3 × 0.1 = 3.3."""
    assert on_testbed_clock(5.0, 2.0, 1.0, 0.1) == pytest.approx(3.3)  # real: 3.3 / 0.1 = 33 s
    assert on_testbed_clock(5.0, 0.0, 0.0, 0.1) == pytest.approx(5.0)
    # more overhead than duration (a scrape mid-step): the whole duration is processing
    assert on_testbed_clock(1.0, 3.0, 0.0, 0.5) == pytest.approx(0.5)


def test_a_jobs_commits_between_its_waits_bill_the_same_at_every_scale() -> None:
    """A 30 s (real) job whose commits and hooks took 2 s of real time: 32 s of work at 0.1 and 0.5.

    Measured: 30 × scale of waits + 2 s. Divided whole by the scale, 0.1 would bill
    50 s and 0.5 34 s; with the 2 s taken out first, both bill 30 + 2 = 32 s.
    """
    task = Billed("task", Mode.CLOUD_RUN_JOB, "worker")
    for scale in (0.1, 0.5, 1.0):
        meters = {
            "worker": {
                "pb_work_seconds_total": 30.0 * scale + 2.0,
                "pb_work_processing_seconds_total": 2.0,
            }
        }
        profile = job_profile(WORKER, meters, 1, scale)
        assert isinstance(profile, InstanceBasedProfile)
        assert real_time(profile).busy_s == pytest.approx(32.0)
        usage = measured_usage(task, meters, scale)
        assert isinstance(usage, CloudRunJobUsage)
        assert real_time(usage).task_s == pytest.approx(32.0)
    # meters without the split (an older results folder): the whole work follows the scale
    old = job_profile(WORKER, {"worker": {"pb_work_seconds_total": 5.0}}, 1, 0.1)
    assert real_time(old).busy_s == pytest.approx(50.0)


def test_a_rooms_active_time_leaves_the_workers_processing_unstretched() -> None:
    """A room active for a 30 s (real) job whose commits and publishes took 2 s of real time.

    The room's clock holds 30 × scale + 2 s; the 2 s are read on the worker
    (``worker/<meter>``). Real active time: 32 s at every scale, so 0.125 GB × 32 = 4 GB-s.
    """
    rooms = Billed(
        "rooms",
        Mode.DURABLE_OBJECT,
        "rooms",
        meters={"active_s": ("active",), "active_overhead_s": ("worker/pb_work_processing_seconds_total",)},
    )
    for scale in (0.1, 0.5):
        meters = {
            "rooms": {"active": 30.0 * scale + 2.0},
            "worker": {"pb_work_processing_seconds_total": 2.0},
        }
        assert quantities(rooms, meters)["active_overhead_s"] == pytest.approx(2.0)
        usage = measured_usage(rooms, meters, scale)
        assert isinstance(usage, DurableObjectUsage)
        assert real_time(usage).active_s == pytest.approx(32.0)
    # no worker meters (another transport's cell, an older folder): nothing is taken out
    usage = measured_usage(rooms, {"rooms": {"active": 5.0}}, 0.1)
    assert real_time(usage).active_s == pytest.approx(50.0)


def test_relays_rooms_take_the_workers_processing_out_of_their_active_time() -> None:
    [rooms] = [b for b in billing_for(REGISTRY["relay"].billing, None) if b.mode is Mode.DURABLE_OBJECT]
    assert rooms.meter_map()["active_overhead_s"] == ("worker/pb_work_processing_seconds_total",)
