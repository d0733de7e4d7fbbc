"""The autoscaling decision and the instance timeline: values in, decisions out, no sockets."""

from __future__ import annotations

import pytest
from progressbench.reports.metered import quantities

from progressbench.core.autoscale import (
    Decision,
    InstanceState,
    ScalePolicy,
    Timeline,
    counts,
    decide,
    needed,
)
from progressbench.core.billed import Billed, Mode

POLICY = ScalePolicy(concurrency=80, min_instances=1, max_instances=20, idle_s=90.0)


def full(name: str, in_flight: int = 80) -> InstanceState:
    return InstanceState(name, in_flight, idle_since=None)


def idle(name: str, since: float, working: bool = False) -> InstanceState:
    return InstanceState(name, 0, idle_since=since, working=working)


def test_a_thousand_open_streams_need_thirteen_instances_and_polling_a_few() -> None:
    """Each open stream holds a slot: 1,000 need ⌈1000/80⌉ = 13; 150 polls in flight need 2."""
    assert needed(POLICY, 1000) == 13
    assert needed(POLICY, 150) == 2
    assert needed(POLICY, 0) == 1  # the floor


def test_a_burst_starts_just_enough_instances_counting_those_already_starting() -> None:
    """One full instance and 200 more streams waiting: 4 in all, so 3 more; 1 already starting: 2."""
    assert decide(POLICY, [full("api-1")], starting=0, waiting=200, now=0.0) == Decision(start=3)
    assert decide(POLICY, [full("api-1")], starting=1, waiting=200, now=0.0) == Decision(start=2)
    assert decide(POLICY, [full("api-1")], starting=3, waiting=200, now=0.0) == Decision()


def test_no_start_while_the_demand_fits() -> None:
    """A full instance with nobody waiting is not a reason to start another."""
    assert decide(POLICY, [full("api-1")], starting=0, waiting=0, now=0.0) == Decision()


def test_never_more_than_max_instances() -> None:
    """Beyond the ceiling requests wait (and get their 429): no start is asked for."""
    small = ScalePolicy(concurrency=80, min_instances=1, max_instances=4, idle_s=90.0)
    serving = [full(f"api-{i}") for i in range(1, 4)]
    assert decide(small, serving, starting=0, waiting=1000, now=0.0) == Decision(start=1)
    assert decide(small, [*serving, full("api-4")], starting=0, waiting=1000, now=0.0) == Decision()


def test_idle_instances_stop_after_their_idle_period_longest_idle_first_above_the_floor() -> None:
    """Idle 90 s or more: stopped, oldest idle first; the floor (1) and the demand are kept."""
    serving = [idle("api-1", 0.0), idle("api-2", 5.0), idle("api-3", 50.0), full("api-4", 10)]
    assert decide(POLICY, serving, 0, 0, now=89.0) == Decision()
    assert decide(POLICY, serving, 0, 0, now=96.0) == Decision(stop=("api-1", "api-2"))
    # all idle long enough, one must stay (api-4 serves 10, so it is the one kept busy)
    assert decide(POLICY, serving, 0, 0, now=200.0) == Decision(stop=("api-1", "api-2", "api-3"))
    only_idle = [idle("api-1", 0.0), idle("api-2", 5.0)]
    assert decide(POLICY, only_idle, 0, 0, now=200.0) == Decision(stop=("api-1",))


def test_an_instance_with_background_work_or_while_others_start_is_not_stopped() -> None:
    """A job after its 202 keeps its instance; and no stop while a start is under way."""
    serving = [full("w-1", 1), idle("w-2", 0.0, working=True)]
    assert decide(POLICY, serving, 0, 0, now=1000.0) == Decision()
    assert decide(POLICY, [full("w-1", 1), idle("w-2", 0.0)], 1, 0, now=1000.0) == Decision()


def test_policy_rejects_impossible_bounds() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ScalePolicy(concurrency=0)
    with pytest.raises(ValueError, match="min_instances"):
        ScalePolicy(min_instances=3, max_instances=2)
    with pytest.raises(ValueError, match="idle_s"):
        ScalePolicy(idle_s=-1)
    with pytest.raises(ValueError, match="≥ 0"):
        decide(POLICY, [], starting=-1, waiting=0, now=0.0)


def test_timeline_counts_max_mean_and_instance_seconds_over_a_window() -> None:
    """A step function: 1 instance, 3 from t=10, 2 from t=30, read over [5, 45]."""
    line = Timeline()
    for t, n in [(0.0, 1), (10.0, 3), (10.5, 3), (30.0, 2)]:
        line.record(t, n)
    assert line.points == [(0.0, 1), (10.0, 3), (30.0, 2)]  # repeats are not kept
    c = counts(line, 5.0, 45.0)
    assert c.max == 3
    assert c.instance_seconds == pytest.approx(5 * 1 + 20 * 3 + 15 * 2)
    assert c.mean == pytest.approx(95 / 40)
    assert c.timeline == ((0.0, 1), (5.0, 3), (25.0, 2))
    with pytest.raises(ValueError, match="forward"):
        line.record(1.0, 5)


def test_instance_based_billing_uses_the_autoscaled_instance_seconds_when_there_are_any() -> None:
    """Scaled out: the autoscaler's instance-seconds; a stack without scale-out: each instance's life."""
    worker = Billed("worker", Mode.CLOUD_RUN_INSTANCE, "worker")
    scaled = {
        "worker": {"pb_autoscaled_instance_seconds_total": 30.0, "pb_instance_tail_seconds_total": 12.0}
    }
    assert quantities(worker, scaled)["instance_s"] == 30.0
    assert quantities(worker, {"worker": {"pb_instance_tail_seconds_total": 12.0}})["instance_s"] == 12.0
