"""The sse benchmark's phases: the anchor's steady state takes no event of the two transients."""

from __future__ import annotations

from types import ModuleType

from tests.helpers import load_benchmark


def _bench() -> ModuleType:
    return load_benchmark("bench_sse")


def test_each_event_falls_in_the_phase_its_commit_time_names() -> None:
    live = [(9.0, 900.0), (10.0, 5.0), (11.0, 6.0), (14.9, 7.0), (15.0, 300.0), (16.0, 40.0)]
    opening, steady, closing = _bench().phases(live, settled=10.0, first_end=15.0)
    assert opening == [900.0]
    assert steady == [5.0, 6.0, 7.0]
    assert closing == [300.0, 40.0]


def test_a_job_that_ends_before_the_streams_settle_leaves_the_steady_state_empty() -> None:
    live = [(9.0, 1.0), (10.5, 2.0), (12.0, 3.0)]
    opening, steady, closing = _bench().phases(live, settled=10.0, first_end=9.5)
    assert (opening, steady, closing) == ([1.0], [], [2.0, 3.0])


def test_no_terminal_event_keeps_every_settled_event_steady() -> None:
    live = [(9.0, 1.0), (10.0, 2.0), (30.0, 3.0)]
    opening, steady, closing = _bench().phases(live, settled=10.0, first_end=float("inf"))
    assert (opening, steady, closing) == ([1.0], [2.0, 3.0], [])
