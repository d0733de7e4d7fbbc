"""The billing model: hand-computed bills per mode, the real-time conversion, load curves, the price file.

Prices used below (reports/prices.toml, platform-facts §8a): Cloud Run
request-based $0.000024/vCPU-s, $0.0000025/GiB-s, $0.40/M requests;
instance-based $0.000018/vCPU-s, $0.000002/GiB-s; 1 vCPU and 0.5 GiB per
instance (ASSUMPTION), so an instance-second costs 0.000024 + 0.5 × 0.0000025
= $0.00002525 request-based and 0.000018 + 0.5 × 0.000002 = $0.000019
instance-based. A month is 30 days = 2,592,000 s.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import pytest
from progressbench.reports.billing import Bill, LineItem, bill_measured, bill_month, price_usage, round_up
from progressbench.reports.load_curve import (
    STANDARD_LOADS,
    InstanceBasedProfile,
    Profile,
    RequestBasedProfile,
    SupabaseProfile,
    cost_at_load,
    cost_at_run_load,
    load_curve,
    per_job,
    run_jobs_per_hour,
)
from progressbench.reports.prices import PriceBook, load_prices, prices_as_of
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
)

from progressbench.core.errors import ConfigError

BOOK = load_prices()
MONTH_S = 2_592_000.0


def total(items: Iterable[LineItem]) -> float:
    return sum(i.usd for i in items)


def by_name(service: str, usage: Usage) -> dict[str, float]:
    return {i.name: i.usd for i in price_usage(service, usage, BOOK)}


# ---------------------------------------------------------------- one service, one mode


def test_background_job_request_based_bills_only_the_ack() -> None:
    """A 30 s job run after a 50 ms 202 is billed for the ACK alone under request-based billing."""
    ack = CloudRunRequestUsage(requests=1, in_flight_s=0.05, busy_s=0.05, busy_periods=1)
    lines = by_name("worker", ack)
    # busy 0.05 s rounds up to 0.1 s
    assert lines["vcpu"] == pytest.approx(0.1 * 1 * 0.000024)  # 0.0000024
    assert lines["memory"] == pytest.approx(0.1 * 0.5 * 0.0000025)  # 0.000000125
    assert lines["requests"] == pytest.approx(0.40 / 1e6)  # 0.0000004
    assert sum(lines.values()) == pytest.approx(0.000002925)


def test_background_job_instance_based_bills_its_whole_life_and_idle_tail() -> None:
    """Instance-based billing pays the 30 s of work plus the 900 s idle tail (ASSUMPTION) after it."""
    life = CloudRunInstanceUsage(instance_s=30 + 900)
    lines = by_name("worker", life)
    assert lines["vcpu"] == pytest.approx(930 * 0.000018)  # 0.01674
    assert lines["memory"] == pytest.approx(930 * 0.5 * 0.000002)  # 0.00093
    assert sum(lines.values()) == pytest.approx(0.01767)
    assert "requests" not in lines  # no per-request fee


def test_cloud_run_job_bills_task_time_at_instance_rates() -> None:
    """A 30 s task costs 30 × $0.000019."""
    assert total(price_usage("runner", CloudRunJobUsage(task_s=30), BOOK)) == pytest.approx(0.00057)


def test_naive_sse_on_vercel_pays_memory_for_the_whole_wait() -> None:
    """60 s wall, 0.5 s active CPU, 1 GB: one invocation + 0.5 CPU-s + 60 GB-s of memory."""
    lines = by_name("api", VercelFunctionUsage(invocations=1, active_cpu_s=0.5, wall_s=60))
    assert lines["invocations"] == pytest.approx(0.60 / 1e6)  # 0.0000006
    assert lines["active_cpu"] == pytest.approx(0.5 * 0.128 / 3600)  # 0.0000177778
    assert lines["memory"] == pytest.approx(60 * 1.0 * 0.0106 / 3600)  # 0.0001766667
    assert sum(lines.values()) == pytest.approx(0.0001950444, rel=1e-6)
    assert lines["memory"] > 9 * lines["active_cpu"]  # waiting, not computing, is the bill


def test_durable_object_room_bills_incoming_messages_by_twenty_and_active_time() -> None:
    """100 incoming WebSocket messages are 5 requests; 60 s active at 0.125 GB is 7.5 GB-s; outgoing free."""
    room = DurableObjectUsage(ws_messages_in=100, ws_messages_out=100, active_s=60)
    items = {i.name: i for i in price_usage("rooms", room, BOOK)}
    assert items["requests"].quantity == pytest.approx(5)  # 100 / 20
    assert items["requests"].usd == pytest.approx(5 * 0.15 / 1e6)  # 0.00000075
    assert items["duration"].quantity == pytest.approx(7.5)  # 60 × 0.125
    assert items["duration"].usd == pytest.approx(7.5 * 12.50 / 1e6)  # 0.00009375
    assert items["ws_messages_out"].usd == 0.0
    assert total(items.values()) == pytest.approx(0.0000945)


def test_cloud_tasks_bills_every_delivery_attempt() -> None:
    """One create call and three delivery attempts (two retries) are four operations."""
    ops = price_usage("queue", CloudTasksUsage(api_calls=1, delivery_attempts=3), BOOK)
    assert ops[0].quantity == 4
    assert ops[0].usd == pytest.approx(4 * 0.40 / 1e6)  # 0.0000016


def test_supabase_list_price_messages_and_peak_connections() -> None:
    """1,000 messages at 50 peak connections: $0.0025 of messages and $0.50 a month of connections."""
    lines = by_name("realtime", SupabaseRealtimeUsage(messages=1000, peak_connections=50))
    assert lines["messages"] == pytest.approx(1000 * 2.50 / 1e6)  # 0.0025
    assert lines["peak_connections"] == pytest.approx(50 * 10.00 / 1000)  # 0.50


def test_supabase_month_with_and_without_free_tiers() -> None:
    """Without free tiers: Pro's $25 + one whole 1 M package ($2.50) + $0.50; with: the Free plan, $0."""
    usage = {"realtime": SupabaseRealtimeUsage(messages=1000, peak_connections=50)}
    paid = bill_month(usage, jobs_per_month=100, book=BOOK)
    assert paid.plans == {"supabase": "supabase.pro"}
    assert paid.month_usd == pytest.approx(25 + 2.50 + 0.50)  # 28.00
    assert paid.lines()["supabase.package_rounding:supabase.realtime.messages"] == pytest.approx(
        2.50 - 0.0025
    )
    assert paid.per_1k_jobs == pytest.approx(28.00 / 100 * 1000)
    free = bill_month(usage, jobs_per_month=100, book=BOOK, free_tiers=True)
    assert free.plans == {"supabase": "supabase.free"}
    assert free.month_usd == pytest.approx(0.0)


def test_supabase_free_plan_refuses_more_than_its_connections() -> None:
    """600 peak connections exceed Free's 200: Pro, $25 + (600 − 500) × $0.01 = $26."""
    usage = {"realtime": SupabaseRealtimeUsage(messages=1000, peak_connections=600)}
    bill = bill_month(usage, jobs_per_month=100, book=BOOK, free_tiers=True)
    assert bill.plans == {"supabase": "supabase.pro"}
    assert bill.month_usd == pytest.approx(26.00)


def test_vercel_pro_credit_and_cloudflare_daily_allowance() -> None:
    """Pro's $20 includes $20 of usage; Workers Free's 100 k requests a day are 3 M a month."""
    # 2 M invocations exceed Hobby's 1 M: Pro at $20, usage 2 M × $0.60/M = $1.20 covered by the credit
    vercel = bill_month(
        {"api": VercelFunctionUsage(invocations=2e6)}, jobs_per_month=1, book=BOOK, free_tiers=True
    )
    assert vercel.plans == {"vercel": "vercel.pro"}
    assert vercel.month_usd == pytest.approx(20.00)
    # 2.5 M requests fit 100 k × 30 days on the free plan; 3.5 M do not: $5 + 2.5 M × $0.15/M = $5.375
    fits = bill_month(
        {"rooms": DurableObjectUsage(http_requests=2.5e6)}, jobs_per_month=1, book=BOOK, free_tiers=True
    )
    assert (fits.plans, fits.month_usd) == ({"cloudflare": "cloudflare.workers_free"}, pytest.approx(0.0))
    over = bill_month(
        {"rooms": DurableObjectUsage(http_requests=3.5e6)}, jobs_per_month=1, book=BOOK, free_tiers=True
    )
    assert (over.plans, over.month_usd) == ({"cloudflare": "cloudflare.workers_paid"}, pytest.approx(5.375))


def test_a_bill_is_its_items_plus_its_adjustments() -> None:
    """Every dollar of the bill appears as a line; a window's share is pro rata of the month."""
    usage = {
        "api": CloudRunRequestUsage(requests=3e6, in_flight_s=3e4, busy_s=2e4, busy_periods=1e6),
        "realtime": SupabaseRealtimeUsage(messages=7e6, peak_connections=700),
    }
    for free in (False, True):
        bill = bill_month(usage, jobs_per_month=1e5, book=BOOK, free_tiers=free)
        assert sum(bill.lines().values()) == pytest.approx(bill.month_usd)
        assert bill.usd_over(MONTH_S / 2) == pytest.approx(bill.month_usd / 2)
    # with free tiers: 2 M requests free; Pro includes 5 M messages (2 M left: 2 packages), 500 connections
    free_bill = bill_month(usage, jobs_per_month=1e5, book=BOOK, free_tiers=True)
    lines = free_bill.lines()
    assert lines["gcp.included:cloud_run.request.requests"] == pytest.approx(-2e6 * 0.40 / 1e6)  # -0.80
    assert lines["supabase.plan:supabase.pro"] == 25.0
    supabase = sum(v for k, v in lines.items() if k.startswith(("realtime.", "supabase.")))
    assert supabase == pytest.approx(25 + 2 * 2.50 + 200 * 0.01)  # 32.00


# ---------------------------------------------------------------- rounding and time scale


def test_each_busy_period_rounds_up_to_100_ms() -> None:
    """Ten isolated 20 ms ACKs bill 10 × 0.1 s; one of 250 ms bills 0.3 s; 3 × 0.1 s bills 0.3 s, not 0.4."""

    def billed_s(usage: CloudRunRequestUsage) -> float:
        return price_usage("api", usage, BOOK)[0].quantity  # vCPU-s at 1 vCPU = instance-seconds

    assert billed_s(
        CloudRunRequestUsage(requests=10, in_flight_s=0.2, busy_s=0.2, busy_periods=10)
    ) == pytest.approx(1.0)
    assert billed_s(
        CloudRunRequestUsage(requests=1, in_flight_s=0.25, busy_s=0.25, busy_periods=1)
    ) == pytest.approx(0.3)
    three = 0.1 + 0.1 + 0.1  # 0.30000000000000004
    assert billed_s(
        CloudRunRequestUsage(requests=3, in_flight_s=three, busy_s=three, busy_periods=3)
    ) == pytest.approx(0.3)
    assert billed_s(
        CloudRunRequestUsage(requests=1, in_flight_s=60, busy_s=60, busy_periods=1)
    ) == pytest.approx(60)
    assert round_up(0.1 + 0.2, 0.1) == pytest.approx(0.3)
    assert round_up(0.0, 0.1) == 0.0


def test_the_same_usage_measured_at_two_time_scales_prices_the_same() -> None:
    """Wall durations are divided by the time scale, CPU time and counts are not, rounding is in real time."""
    # real: a 60 s stream of 0.5 CPU-s, a 50 ms ACK (billed 0.1 s); the ACK measured 5 ms at 0.1, 25 ms at 0.5
    for scale in (0.1, 0.5):
        vercel = VercelFunctionUsage(invocations=1, active_cpu_s=0.5, wall_s=60 * scale, time_scale=scale)
        assert total(price_usage("api", vercel, BOOK)) == pytest.approx(0.0001950444, rel=1e-6)
        ack = CloudRunRequestUsage(
            requests=1, in_flight_s=0.05 * scale, busy_s=0.05 * scale, busy_periods=1, time_scale=scale
        )
        assert total(price_usage("worker", ack, BOOK)) == pytest.approx(0.000002925)
    slow = VercelFunctionUsage(invocations=1, active_cpu_s=0.5, wall_s=6, time_scale=0.1)
    assert real_time(slow) == VercelFunctionUsage(invocations=1, active_cpu_s=0.5, wall_s=60)
    assert real_time(real_time(slow)) == real_time(slow)  # converting twice changes nothing


def test_measured_cell_at_two_time_scales_bills_the_same() -> None:
    """A cell of 600 real seconds measured in 60 s at 0.1 or 300 s at 0.5 gets the same bill and load."""
    bills = []
    for scale in (0.1, 0.5):
        usages = {
            "api": VercelFunctionUsage(
                invocations=50, active_cpu_s=25, wall_s=50 * 60 * scale, time_scale=scale
            ),
            "realtime": SupabaseRealtimeUsage(messages=1000, peak_connections=5, time_scale=scale),
        }
        bills.append(bill_measured(usages, jobs=50, measured_s=600 * scale, time_scale=scale, book=BOOK))
    a, b = bills
    assert a.jobs_per_hour == pytest.approx(300)  # 50 jobs in 600 real seconds
    assert a.month_usd == pytest.approx(b.month_usd)
    assert a.per_1k_jobs == pytest.approx(b.per_1k_jobs)
    # a month at that load: 50 × 4320 = 216,000 invocations; the peak stays 5 connections
    assert {i.name: i.quantity for i in a.items if i.owner == "realtime"}["peak_connections"] == 5


def test_usage_refuses_impossible_numbers() -> None:
    """Negative, infinite and inconsistent quantities are refused, naming the field."""
    with pytest.raises(ValueError, match="wall_s"):
        VercelFunctionUsage(wall_s=-1)
    with pytest.raises(ValueError, match="messages"):
        SupabaseRealtimeUsage(messages=math.inf)
    with pytest.raises(ValueError, match="time_scale"):
        CloudRunJobUsage(task_s=1, time_scale=0)
    with pytest.raises(ValueError, match="busy_s"):
        CloudRunRequestUsage(requests=1, in_flight_s=1, busy_s=2, busy_periods=1)


# ---------------------------------------------------------------- cost as a function of load

API = RequestBasedProfile(requests=2, in_flight_s=0.1)
WORKER_202 = InstanceBasedProfile(busy_s=60)
CELLS: dict[str, dict[str, Profile]] = {
    "sse-naive": {"api": VercelFunctionUsage(invocations=1, active_cpu_s=0.5, wall_s=60)},
    "sse": {"api": RequestBasedProfile(requests=2, in_flight_s=60.05), "worker": WORKER_202},
    "realtime": {"api": API, "worker": WORKER_202, "realtime": SupabaseProfile(messages=20, connection_s=60)},
    "relay": {
        "api": API,
        "queue": CloudTasksUsage(api_calls=1, delivery_attempts=1),
        "worker": RequestBasedProfile(requests=1, in_flight_s=60),
        "rooms": DurableObjectUsage(http_requests=20, ws_messages_in=2, ws_messages_out=20, active_s=70),
    },
    "polling": {"api": RequestBasedProfile(requests=31, in_flight_s=0.62), "worker": WORKER_202},
}


def per_1k(bill: Bill) -> float:
    assert bill.per_1k_jobs is not None
    return bill.per_1k_jobs


def test_request_based_at_a_hand_computed_load() -> None:
    """3600 jobs/h of one 0.45 s request: busy 1 − e^−0.45, periods e^−0.45 per second, each padded 0.05 s."""
    bill = cost_at_load({"api": RequestBasedProfile(requests=1, in_flight_s=0.45)}, 3600, BOOK)
    # c = 1/s × 0.45 s = 0.45; busy 0.3623718 + 0.6376282 × 0.05 = 0.3942533 instance-s per second (= per job)
    # per job: 0.3942533 × $0.00002525 + $0.0000004 = $0.0000103549
    assert per_1k(bill) == pytest.approx(0.0103549, rel=1e-5)


def test_instance_based_at_a_hand_computed_load() -> None:
    """10 jobs/h of 30 s work + 900 s tail: alive 1 − e^(−930/360) = 0.924478 of the month."""
    bill = cost_at_load({"worker": InstanceBasedProfile(busy_s=30)}, 10, BOOK)
    # 0.924478 × 2,592,000 s × $0.000019 = $45.5287 a month, over 7,200 jobs = $6.32343 per 1k
    assert bill.month_usd == pytest.approx(45.5287, rel=1e-5)
    assert per_1k(bill) == pytest.approx(6.32343, rel=1e-5)


def test_request_based_cost_per_job_never_rises_with_load() -> None:
    """Below one instance's concurrency, more load only merges busy periods: cost per job falls or stays."""
    loads = [10 * 1.5**k for k in range(30)]  # 10 .. ~1.3 M jobs/h; c stays below 80
    costs = [per_1k(cost_at_load({"api": API}, load, BOOK)) for load in loads]
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(costs))
    # at low load: 2 isolated requests of 50 ms, each billed 0.1 s: 0.2 × 0.00002525 + 2 × 0.0000004 per job
    assert costs[0] == pytest.approx((0.2 * 0.00002525 + 2 * 0.0000004) * 1000, rel=1e-3)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_load_curve_properties(cell: str) -> None:
    """Per job, cost falls with load over the standard loads, and free tiers never make it dearer."""
    curve = load_curve(CELLS[cell], BOOK)
    assert [p.jobs_per_hour for p in curve] == list(STANDARD_LOADS)
    without = [per_1k(p.without_free_tiers) for p in curve]
    assert all(b <= a for a, b in itertools.pairwise(without))
    for point in curve:
        assert per_1k(point.with_free_tiers) <= per_1k(point.without_free_tiers) + 1e-12
        row = point.as_dict()
        assert row["usd_per_1k_jobs_without_free_tiers"] == per_1k(point.without_free_tiers)


def test_plan_fees_dominate_at_low_load_without_free_tiers() -> None:
    """At 10 jobs/h Vercel Pro's $20 is most of the naive SSE bill; at 100 k jobs/h it is a rounding error."""
    low = cost_at_load(CELLS["sse-naive"], 10, BOOK)
    assert low.lines()["vercel.plan:vercel.pro"] / low.month_usd > 0.9  # $20 of $21.40
    high = cost_at_load(CELLS["sse-naive"], 100_000, BOOK)
    assert high.lines()["vercel.plan:vercel.pro"] / high.month_usd < 0.01
    supabase = cost_at_load(CELLS["realtime"], 10, BOOK).lines()
    assert supabase["supabase.plan:supabase.pro"] > 10 * supabase["realtime.peak_connections"]


def test_only_realtime_cells_pay_supabase() -> None:
    """Supabase peak connections come from its own clients: relay and polling never see a Supabase line."""
    for cell in ("relay", "polling", "sse"):
        assert "supabase" not in cost_at_load(CELLS[cell], 1000, BOOK).plans
    realtime = cost_at_load(CELLS["realtime"], 3600, BOOK)
    # 1 job/s × 60 s connected = 60 concurrent clients = the month's peak
    peak = {i.name: i.quantity for i in realtime.items if i.owner == "realtime"}["peak_connections"]
    assert peak == 60
    with_server = cost_at_load(
        {"rt": SupabaseProfile(messages=1, connection_s=60, server_connections=1)}, 3600, BOOK
    )
    assert {i.name: i.quantity for i in with_server.items}["peak_connections"] == 61


def test_cost_at_the_runs_own_load_says_which_load() -> None:
    """50 jobs in 30 s at time scale 0.1 is 50 jobs in 300 real seconds: 600 jobs/h."""
    assert run_jobs_per_hour(50, 30, 0.1) == pytest.approx(600)
    bill = cost_at_run_load(CELLS["relay"], jobs=50, measured_s=30, time_scale=0.1, book=BOOK)
    assert bill.jobs_per_hour == pytest.approx(600)
    assert bill.per_1k_jobs == pytest.approx(per_1k(cost_at_load(CELLS["relay"], 600, BOOK)))


def test_per_job_share_of_a_linear_usage() -> None:
    """A queue that made 10 calls and 30 attempts for 10 jobs used 1 call and 3 attempts per job."""
    assert per_job(CloudTasksUsage(api_calls=10, delivery_attempts=30), 10) == CloudTasksUsage(
        api_calls=1, delivery_attempts=3
    )


# ---------------------------------------------------------------- the price file


def test_every_price_has_a_unit_a_source_and_a_date() -> None:
    """The packaged table loads; every entry says where and when it was read; assumptions are labelled."""
    book = load_prices()
    entries = [*book.meter.values(), *book.plan.values(), *book.setting.values()]
    assert entries
    for entry in entries:
        assert entry.source.strip()
        assert entry.as_of[:4].isdigit()
    assert all(m.unit for m in book.meter.values())
    assumed = {k for k, s in book.setting.items() if s.assumption}
    assert {"cloud_run.vcpu_per_instance", "cloud_run.gib_per_instance", "cloud_run.idle_tail_s"} <= assumed
    assert "cloud_run.rounding_s" not in assumed  # sourced (§1b)
    assert prices_as_of(book) == "2026-11"
    assert book.plan["supabase.pro"].fee_month_usd == 25
    assert book.plan["cloudflare.workers_paid"].fee_month_usd == 5
    assert book.plan["vercel.pro"].fee_month_usd == 20 and book.plan["vercel.pro"].per_member


def test_prices_as_of_is_the_oldest_date() -> None:
    """One stale price makes the whole table that old."""
    text = _packaged().replace('as_of = "2026-11"', 'as_of = "2025-06"', 1)
    book = PriceBook.model_validate(tomllib.loads(text))
    assert prices_as_of(book) == "2025-06"


def _packaged() -> str:
    return (resources.files("progressbench.reports") / "prices.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("price_usd = 0.000024\n", "price_usd = -1\n", r"cloud_run\.request\.vcpu_s\.price_usd"),
        ("price_usd = 0.000024\n", "price_usd = nan\n", r"cloud_run\.request\.vcpu_s\.price_usd.*finite"),
        ('as_of = "2026-11"', 'as_of = "last year"', r"as_of"),
        ('source = "https://cloud.google.com/run/pricing"', 'source = ""', r"source"),
        ('"cloud_tasks.operations" = 1_000_000', '"cloud_tasks.op" = 1_000_000', r"cloud_tasks\.op"),
        ('[setting."vercel.members"]', '[setting."vercel.member"]', r"missing setting.*vercel\.members"),
        ("paid = true\nfee_month_usd = 25.0", "fee_month_usd = 25.0", r"supabase.*paid"),
        ("price_usd = 0.000024\n", "price_usd = 0.000024\nprise = 1\n", r"prise"),
        ("value = 0.1\n", "value = 0\n", r"must be > 0: cloud_run\.rounding_s"),
        ("price_usd = 0.000024\n", "price_usd = = 0.000024\n", r"not valid TOML"),
    ],
)
def test_malformed_price_file_names_the_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """A bad entry is refused with one clear line naming its key."""
    text = _packaged()
    assert old in text
    path = tmp_path / "prices.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=expected):
        load_prices(path)


def test_missing_price_file_is_a_config_error(tmp_path: Path) -> None:
    """An unreadable path is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_prices(tmp_path / "absent.toml")
