"""The queue's pure parts: the backoff schedule the dispatcher uses, give-up, Retry-After, rate limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from progressbench.transports.relay.queue.retry import (
    QueueConfig,
    ScaledRetry,
    TokenBucket,
    backoff_s,
    counts_as_execution,
    gives_up,
    next_delay,
    parse_retry_after,
    task_headers,
)

from progressbench.core.config import Timing


def documented(min_s: float, max_s: float, doublings: int, n: int) -> list[float]:
    """Cloud Tasks' RetryConfig.max_doublings text, implemented independently (iteratively)."""
    out, interval = [], min_s
    for i in range(n):
        if i == 0:
            interval = min_s
        elif i <= doublings:
            interval = interval * 2
        else:
            interval = interval + min_s * 2**doublings
        out.append(min(interval, max_s))
    return out


def test_documented_example_10_300_3() -> None:
    """min 10 s, max 300 s, 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300."""
    retry = QueueConfig(min_backoff_s=10, max_backoff_s=300, max_doublings=3).scaled(Timing())
    assert [backoff_s(retry, n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]


@pytest.mark.parametrize(
    ("min_s", "max_s", "doublings"),
    [(0.1, 3600, 16), (10, 300, 3), (1, 1000, 0), (0.5, 60, 5), (2, 2, 4), (0, 10, 3)],
)
def test_schedule_matches_the_documented_formula(min_s: float, max_s: float, doublings: int) -> None:
    """For any parameters the dispatcher's schedule equals the documented one, attempt by attempt."""
    retry = QueueConfig(min_backoff_s=min_s, max_backoff_s=max_s, max_doublings=doublings).scaled(Timing())
    assert [backoff_s(retry, n) for n in range(1, 41)] == pytest.approx(
        documented(min_s, max_s, doublings, 40)
    )


def test_defaults_are_cloud_tasks_defaults_and_scale_with_the_run() -> None:
    """Defaults: 100 attempts, 0.1 s .. 3600 s, 16 doublings, 10 min deadline; durations scale."""
    config = QueueConfig()
    assert (config.max_attempts, config.min_backoff_s, config.max_backoff_s, config.max_doublings) == (
        100,
        0.1,
        3600.0,
        16,
    )
    assert (config.max_dispatches_per_second, config.max_burst_size, config.max_concurrent_dispatches) == (
        500,
        100,
        1000,
    )
    assert config.dispatch_deadline_s == 600
    scaled = config.scaled(Timing(time_scale=0.05))
    assert scaled.min_backoff_s == pytest.approx(0.005) and scaled.max_backoff_s == pytest.approx(180)
    assert backoff_s(scaled, 3) == pytest.approx(0.02)


def test_dispatch_deadline_range_is_enforced() -> None:
    """The HTTP dispatch deadline must lie in [15 s, 30 min]."""
    with pytest.raises(ValueError):
        QueueConfig(dispatch_deadline_s=10)
    with pytest.raises(ValueError):
        QueueConfig(dispatch_deadline_s=1801)


def test_give_up_after_max_attempts_unless_unlimited() -> None:
    """100 attempts (duration unlimited) end the task; -1 attempts never do, a duration limit can."""
    retry = QueueConfig().scaled(Timing())
    assert not gives_up(retry, 99, 1e9) and gives_up(retry, 100, 0)
    unlimited = ScaledRetry(0.1, 10, 3, max_attempts=-1, max_retry_duration_s=0)
    assert not gives_up(unlimited, 10_000, 1e9)
    both = ScaledRetry(0.1, 10, 3, max_attempts=5, max_retry_duration_s=60)
    assert not gives_up(both, 5, 30), "both limits must be reached"
    assert gives_up(both, 5, 61)


def test_retry_after_is_honoured_on_429_and_503_only() -> None:
    """Retry-After lengthens the wait on 429/503; other statuses keep the schedule."""
    retry = QueueConfig(min_backoff_s=1, max_backoff_s=100, max_doublings=3).scaled(Timing())
    assert next_delay(retry, 1, 503, 7.0) == 7.0
    assert next_delay(retry, 1, 429, 0.5) == 1.0, "never shorter than the schedule"
    assert next_delay(retry, 2, 500, 7.0) == 2.0
    assert next_delay(retry, 2, None, None) == 2.0


def test_parse_retry_after() -> None:
    """Delta-seconds, fractional seconds and HTTP dates are understood; junk is ignored."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.250") == 0.25
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_headers_and_execution_count() -> None:
    """Every attempt carries the X-CloudTasks-* headers; 5xx does not count as an execution."""
    h = task_headers("relay", "job-1", 2, 1, 1700000000.5, 503, None)
    assert h["X-CloudTasks-QueueName"] == "relay" and h["X-CloudTasks-TaskName"] == "job-1"
    assert h["X-CloudTasks-TaskRetryCount"] == "2" and h["X-CloudTasks-TaskExecutionCount"] == "1"
    assert h["X-CloudTasks-TaskETA"].startswith("1700000000.5")
    assert h["X-CloudTasks-TaskPreviousResponse"] == "503" and h["User-Agent"] == "Google-Cloud-Tasks"
    assert "X-CloudTasks-TaskPreviousResponse" not in task_headers("q", "t", 0, 0, 0, None, None)
    assert counts_as_execution(404) and not counts_as_execution(503) and not counts_as_execution(None)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    """A full bucket lets max_burst_size go at once; later dispatches are spaced at 1/rate."""
    bucket = TokenBucket(rate=10.0, burst=3)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.1)
    assert bucket.take(100.0) == pytest.approx(0.2)
    assert bucket.take(101.0) == 0.0, "a second later the bucket has refilled"


def test_headroom_is_what_the_bucket_lets_out_within_a_burst_or_the_horizon() -> None:
    """Claims stop where a claimed task would wait longer than a burst's refill or the horizon."""
    bucket = TokenBucket(rate=100.0, burst=10)
    assert bucket.headroom(0.0, within_s=60) == 20, "a full burst now plus one burst's refill"
    assert bucket.headroom(0.0, within_s=0.05) == 15, "the horizon binds: 5 tokens refill in 50 ms"
    waits = [bucket.take(0.0) for _ in range(20)]
    assert max(waits) == pytest.approx(0.1), "the 20th take waits exactly one burst's refill"
    assert bucket.headroom(0.0, within_s=60) == 0
    assert bucket.until_headroom(0.0, 5, within_s=60) == pytest.approx(0.05)
    assert bucket.headroom(0.05, within_s=60) == 5
    assert bucket.until_headroom(0.0, 1, within_s=0.0) == pytest.approx(0.11), "until a token is free"
    assert bucket.until_headroom(1.0, 5, within_s=60) == 0.0


def test_headroom_never_goes_negative_and_the_refill_is_capped() -> None:
    """Reservations beyond the horizon show as no headroom; an idle bucket holds one burst only."""
    bucket = TokenBucket(rate=10.0, burst=2)
    for _ in range(10):
        bucket.take(0.0)
    assert bucket.headroom(0.0, within_s=60) == 0
    assert bucket.available(1000.0) == 2.0
