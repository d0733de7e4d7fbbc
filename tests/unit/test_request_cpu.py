"""The CPU a request-billed instance gives its background work (``polling:in-instance``)."""

from __future__ import annotations

import pytest

from progressbench.core.throttle import RequestCpu

POLICY = RequestCpu(grant_s=0.5, idle_s=45.0)


def test_a_request_in_flight_gives_cpu_whatever_the_quiet_time() -> None:
    assert POLICY.decide(1, last_request_end=0.0, started=0.0, now=1000.0) == "run"


@pytest.mark.parametrize(
    ("quiet", "expected"),
    [(0.0, "run"), (0.49, "run"), (0.5, "wait"), (30.0, "wait"), (44.99, "wait"), (45.0, "reaped")],
)
def test_quiet_time_since_the_last_request_decides(quiet: float, expected: str) -> None:
    """A short grant after each request, then throttled, then reaped after the idle period."""
    assert POLICY.decide(0, last_request_end=100.0, started=10.0, now=100.0 + quiet) == expected


def test_before_any_request_ended_the_job_start_counts_as_the_last_request() -> None:
    assert POLICY.decide(0, last_request_end=None, started=5.0, now=5.2) == "run"
    assert POLICY.decide(0, last_request_end=None, started=5.0, now=6.0) == "wait"
    assert POLICY.decide(0, last_request_end=None, started=5.0, now=50.0) == "reaped"


def test_the_work_looks_again_several_times_per_grant() -> None:
    assert POLICY.tick_s == pytest.approx(0.1)
    assert RequestCpu(grant_s=0.0001, idle_s=1.0).tick_s == 0.001


def test_a_request_that_ended_before_the_job_started_does_not_shorten_its_life() -> None:
    """The accepting request started the job: quiet time counts from then at the earliest."""
    assert POLICY.decide(0, last_request_end=0.0, started=40.0, now=60.0) == "wait"
