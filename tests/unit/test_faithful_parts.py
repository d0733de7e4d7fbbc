"""The pure parts behind the faithful patterns: upstream failures, declared contexts, findings, rules."""

from __future__ import annotations

import uuid

import pytest
from progressbench.chaos.profiles import get_profile
from progressbench.reports.gate import apply_rules
from progressbench.transports.realtime.config import WatcherOptions
from progressbench.transports.registry import REGISTRY, resolve

from progressbench.app.gate_rules import builtin_rules
from progressbench.app.services.app import watched
from progressbench.core import ledger
from progressbench.core.config import Timing
from progressbench.core.ledger import JobTruth, account, summarize
from progressbench.kit import executor
from progressbench.kit.executor import upstream_fails
from tests.unit.summaries import make_cell
from tests.unit.test_ledger import JOB, in_order, record, truth


def test_upstream_failures_are_seeded_per_job_step_and_attempt() -> None:
    job = uuid.UUID(int=7)
    assert not any(upstream_fails(job, s, 1, 0.0) for s in range(1, 500))
    draws = [upstream_fails(job, s, 1, 0.5) for s in range(1, 1001)]
    assert draws == [upstream_fails(job, s, 1, 0.5) for s in range(1, 1001)], "replayable"
    assert 400 < sum(draws) < 600
    retried = [upstream_fails(job, s, 2, 0.5) for s in range(1, 1001)]
    assert retried != draws, "a retry of a step is a fresh draw"


@pytest.mark.parametrize(
    ("name", "declared", "watchdog"),
    [
        ("realtime", "worker/request", False),
        ("realtime:watchdog", "worker/request", False),
        ("relay", "worker/worker-background", False),
        ("relay:ack-at-end", "worker/request", False),
        ("polling", "worker/worker-background", True),
        ("polling:in-instance", "api/instance-background", True),
        ("sse", "worker/worker-background", True),
    ],
)
def test_transports_declare_where_their_work_runs_and_whether_a_lease_watchdog_is_theirs(
    name: str, declared: str, watchdog: bool
) -> None:
    transport, variant = resolve(name)
    assert transport.context_for(variant) == declared
    assert transport.lease_watchdog is watchdog


def test_every_transport_declares_a_context_of_the_known_kinds() -> None:
    kinds = {"request", "worker-background", "job-runner", "instance-background"}
    for transport in REGISTRY.values():
        for variant in (None, *transport.variants):
            service, _, kind = transport.context_for(variant).partition("/")
            assert service and kind in kinds, (transport.name, variant)


def test_the_server_conditions_profiles() -> None:
    flaky = get_profile("flaky-upstream")
    assert flaky.conditions is not None and 0 < flaky.conditions.upstream_failure_rate < 1
    assert not flaky.steps and not flaky.conditions.misdeployed
    misdeployed = get_profile("misdeployed")
    assert misdeployed.conditions is not None and misdeployed.conditions.misdeployed
    assert misdeployed.timing["request_timeout_s"] < 300


def test_triggers_named_alike_in_the_executor_and_the_ledger() -> None:
    assert executor.TRIGGERS == ledger.TRIGGERS


def fallen_back() -> JobTruth:
    t = truth()
    return JobTruth(
        t.job_id,
        t.status,
        t.events,
        t.step_runs,
        contexts=("api/request",),
        triggers=("dispatch",),
    )


def test_a_job_that_ran_outside_its_declared_context_is_a_silent_fallback() -> None:
    row, _ = account(record(in_order()), {JOB: fallen_back()}, declared_context="worker/request")
    assert row.silent_fallbacks == 1
    assert "silent-fallback" in row.findings.split(";")
    assert row.contexts == "api/request=1" and row.triggers == "dispatch=1"
    # The same job judged against the context it ran in: nothing to report.
    fine, _ = account(record(in_order()), {JOB: fallen_back()}, declared_context="api/request")
    assert fine.silent_fallbacks == 0 and "silent-fallback" not in fine.findings
    # Undeclared: not judged.
    assert account(record(in_order()), {JOB: fallen_back()})[0].silent_fallbacks == 0


def test_the_cell_counts_executions_by_context_and_by_trigger_with_every_trigger_present() -> None:
    t = truth()
    resumed = JobTruth(
        t.job_id,
        t.status,
        t.events,
        t.step_runs,
        contexts=("worker/request", "worker/request"),
        triggers=("dispatch", "cron"),
    )
    row, events = account(record(in_order()), {JOB: resumed}, declared_context="worker/request")
    cell = summarize("realtime:watchdog", "sigterm", [row], events)
    assert cell.executions_by_context == {"worker/request": 2}
    assert cell.executions_by_trigger == {"dispatch": 1, "queue-retry": 0, "cron": 1, "lease-watchdog": 0}
    assert cell.silent_fallbacks == 0


def failing(transport: str, profile: str, **changes: object) -> list[str]:
    cell = make_cell(transport, profile, **({"canary_probes": 3} | changes))  # every real cell probes
    return [v.rule for v in apply_rules([cell], builtin_rules()) if not v.ok]


def test_a_faithful_flaw_that_stops_showing_fails_the_gate() -> None:
    """realtime under sigterm must leave stuck jobs; a realtime that suddenly recovers is a regression."""
    good = {"delivery_ratio": 1.0, "terminal_ratio": 1.0, "stuck_jobs": 0}
    assert any("stuck_jobs" in r for r in failing("realtime", "sigterm", **good))
    faithful = {**good, "terminal_ratio": 0.5, "stuck_jobs": 2}
    assert failing("realtime", "sigterm", **faithful) == []


def test_the_gate_wants_the_queue_retry_for_ack_at_end_and_the_cron_for_202() -> None:
    retried = {
        "terminal_ratio": 1.0,
        "job_terminal_ratio": 1.0,
        "executions_by_trigger": {"queue-retry": 3, "cron": 0},
    }
    assert failing("relay:ack-at-end", "flaky-upstream", **retried) == []
    assert failing("relay", "flaky-upstream", **retried), "202 has no retry-on-5xx"
    by_cron = {
        "terminal_ratio": 1.0,
        "job_terminal_ratio": 1.0,
        "executions_by_trigger": {"queue-retry": 0, "cron": 2},
    }
    assert failing("relay", "flaky-upstream", **by_cron) == []


def test_silent_fallbacks_are_zero_everywhere_but_required_under_misdeployed() -> None:
    assert any("silent_fallbacks" in r for r in failing("polling", "clean", silent_fallbacks=1))
    assert any("silent_fallbacks" in r for r in failing("relay", "misdeployed", silent_fallbacks=0))
    assert not any("silent_fallbacks" in r for r in failing("relay", "misdeployed", silent_fallbacks=3))
    for dispatched in ("sse", "sse:browser", "polling", "polling:log"):
        assert any("silent_fallbacks" in r for r in failing(dispatched, "misdeployed", silent_fallbacks=0))
        assert not any(
            "silent_fallbacks" in r for r in failing(dispatched, "misdeployed", silent_fallbacks=2)
        )
    for undispatched in ("sse-naive", "sse-naive:cancel", "polling:in-instance"):
        assert any("silent_fallbacks" in r for r in failing(undispatched, "misdeployed", silent_fallbacks=1))
        assert not any(
            "silent_fallbacks" in r for r in failing(undispatched, "misdeployed", silent_fallbacks=0)
        )


def test_the_realtime_pattern_refetches_on_subscribe_only_and_the_variant_periodically() -> None:
    timing = Timing(time_scale=0.5)
    assert WatcherOptions.parse({}, timing).refetch_s is None
    assert WatcherOptions.parse({}, timing, periodic=True).refetch_s == 4.0
    assert WatcherOptions.parse({"refetch_s": "2"}, timing).refetch_s == 1.0


def test_the_workers_lease_watchdog_adopts_only_work_that_was_the_workers() -> None:
    """polling:in-instance runs on the API instance that accepted it; no worker may adopt it."""
    names = watched()
    assert {"sse", "sse:browser", "polling", "polling:log"} <= set(names)
    assert "polling:in-instance" not in names
    assert not any(n.startswith(("realtime", "relay", "sse-naive")) for n in names)
