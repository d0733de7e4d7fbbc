"""The billing meters' bookkeeping, on a hand-driven clock: busy periods, invocations, work, lives.

Times are plain numbers handed to the clock, so every expected value below
is computed by hand from the timeline in the test.
"""

from __future__ import annotations

import asyncio

import pytest
from progressbench.transports.relay.rooms.meters import RoomClock

from progressbench.core.config import Timing
from progressbench.kit.meters import Meters, _Clock, parse_exposition, request_waits_on_job


def test_busy_periods_count_each_start_from_idle() -> None:
    c = _Clock()
    c.begin(1, 0.0)
    c.begin(2, 0.5)  # overlaps: same busy period
    c.end(1, 1.0)
    c.end(2, 2.0)
    c.begin(3, 5.0)
    c.end(3, 5.2)
    assert c.busy_periods == 2
    assert c.busy_seconds(10.0) == pytest.approx(2.2)
    assert c.connection_seconds(10.0) == pytest.approx(1.0 + 1.5 + 0.2)


def test_held_requests_are_split_from_processing() -> None:
    """A stream (held for the job) 0-8 s and a poll 1-1.05 s: 8 s held, 0.05 s processing."""
    c = _Clock()
    c.begin(1, 0.0)
    c.mark_held(1)
    c.begin(2, 1.0)
    c.end(2, 1.05)
    assert c.held_seconds(4.0) == pytest.approx(4.0)  # still open: counted up to now
    c.end(1, 8.0)
    assert c.held_seconds(9.0) == pytest.approx(8.0)
    assert c.connection_seconds(9.0) - c.held_seconds(9.0) == pytest.approx(0.05)
    assert c.held_invocation_seconds(9.0) == pytest.approx(8.0)
    assert c.invocation_seconds(9.0) == pytest.approx(8.05)
    c.mark_held(99)  # not open: nothing to mark
    assert c.held == set() and c.held_invocations == set()


def test_an_invocation_lasts_until_its_spawned_work_ends() -> None:
    """after(): the response ends at 0.1 s, the dispatch it left running at 3 s."""
    c = _Clock()
    c.begin(1, 0.0)
    c.hold(1)
    c.end(1, 0.1)
    assert c.invocation_seconds(1.0) == pytest.approx(1.0)  # still open, counted up to now
    c.release(1, 3.0)
    assert c.invocation_seconds(10.0) == pytest.approx(3.0)
    c.begin(2, 4.0)
    c.end(2, 4.5)  # nothing spawned: its wall time is the request's
    assert c.invocation_seconds(10.0) == pytest.approx(3.5)


def test_work_seconds_sum_each_job_and_ignore_a_second_start() -> None:
    c = _Clock()
    c.work_begin("a", 0.0)
    c.work_begin("b", 1.0)
    c.work_begin("a", 2.0)  # already running: not a second job
    c.work_end("a", 10.0)
    assert c.work_seconds(11.0) == pytest.approx(10.0 + 10.0)
    c.work_end("b", 11.0)
    c.work_end("missing", 12.0)
    assert c.work_seconds(20.0) == pytest.approx(20.0)


def test_work_splits_into_the_steps_waits_and_the_processing_between_them() -> None:
    """A job 0-10 s whose steps waited 3 + 4 s: 7 s scaled, 3 s of commits and hooks (real)."""
    meters = Meters("worker", 80)
    c = meters.clock
    c.work_begin("job", 0.0)
    meters.work_waited(3.0)
    meters.work_waited(4.0)
    meters.work_waited(-1.0)  # a clock step backwards adds nothing
    c.work_end("job", 10.0)
    assert c.work_waiting_total == pytest.approx(7.0)
    assert c.work_processing_seconds(12.0) == pytest.approx(3.0)
    c.work_waiting_total = 50.0  # more waits than work (a scrape mid-step): never negative
    assert c.work_processing_seconds(12.0) == 0.0


def test_instance_life_is_activity_plus_each_idle_gap_up_to_the_tail() -> None:
    """Tail 5 s. Work 0-10, idle 10-12 (2 s, all billed), request 12-13, idle 13-30 (5 s billed)."""
    c = _Clock(idle_tail_s=5.0)
    assert c.life_seconds(100.0) == 0.0  # no work yet: scaled to zero, not alive
    c.work_begin("job", 0.0)
    c.work_end("job", 10.0)
    assert c.life_seconds(11.0) == pytest.approx(11.0)  # inside the tail
    c.begin(1, 12.0)
    c.end(1, 13.0)
    assert c.life_seconds(14.0) == pytest.approx(10 + 2 + 1 + 1)
    assert c.life_seconds(30.0) == pytest.approx(10 + 2 + 1 + 5)
    c.work_begin("job2", 30.0)
    assert c.life_seconds(31.0) == pytest.approx(10 + 2 + 1 + 5 + 1)


def test_instance_life_never_decreases() -> None:
    c = _Clock(idle_tail_s=2.0)
    seen = []
    for t, action in [(0, "b"), (1, "e"), (1.5, None), (4, "b"), (4.2, "e"), (9, None)]:
        if action == "b":
            c.work_begin("j", t)
        elif action == "e":
            c.work_end("j", t)
        seen.append(c.life_seconds(t))
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1 + 2 + 0.2 + 2)


def test_room_clock_sums_each_rooms_open_time() -> None:
    rooms = RoomClock()
    rooms.opened("a", 0.0)
    rooms.opened("a", 1.0)  # a second socket: the room was already active
    rooms.opened("b", 2.0)
    rooms.closed("a", 5.0)
    assert rooms.seconds(6.0) == pytest.approx(5.0 + 4.0)
    rooms.closed("b", 6.0)
    rooms.closed("b", 7.0)  # already closed: nothing more
    assert rooms.seconds(10.0) == pytest.approx(9.0)


def test_the_exposition_carries_every_billing_meter() -> None:
    meters = Meters("worker", 80, Timing(time_scale=0.1, scale_down_idle_s=10.0))
    assert meters.clock.idle_tail_s == 1.0
    meters.work_begin("job")
    meters.work_end("job")
    names = set(parse_exposition(meters.exposition().decode()))
    for name in (
        "pb_busy_periods_total",
        "pb_instance_tail_seconds_total",
        "pb_invocation_seconds_total",
        "pb_work_seconds_total",
        "pb_work_waiting_seconds_total",
        "pb_work_processing_seconds_total",
        "pb_cpu_seconds_total",
        "pb_billable_instance_seconds_total",
        "pb_connection_seconds_total",
        "pb_held_seconds_total",
        "pb_processing_seconds_total",
        "pb_held_invocation_seconds_total",
        "pb_invocation_processing_seconds_total",
    ):
        assert name in names, name


def test_hold_outside_a_request_does_nothing() -> None:
    meters = Meters("api", 80)
    release = meters.hold_invocation()
    release()
    assert meters.clock.invocations == {}


def test_a_request_that_waits_on_its_job_is_held_and_a_websocket_always() -> None:
    meters = Meters("api", 80)

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["path"] == "/stream":
            request_waits_on_job()

    async def main() -> None:
        mw = meters.middleware(app)  # type: ignore[arg-type]
        for scope in ({"type": "http", "path": "/stream"}, {"type": "websocket", "path": "/ws"}):
            await mw(scope, _never, _discard)
        assert meters.clock.held_closed_total > 0
        before = meters.clock.held_closed_total
        await mw({"type": "http", "path": "/poll"}, _never, _discard)
        assert meters.clock.held_closed_total == before  # a plain request is processing

    asyncio.run(main())
    request_waits_on_job()  # outside a request: nothing happens


def test_a_task_spawned_inside_a_request_holds_its_invocation() -> None:
    """The middleware's context variable reaches tasks created inside the request."""
    meters = Meters("api", 80)
    events: list[str] = []

    async def app(scope: object, receive: object, send: object) -> None:
        release = meters.hold_invocation()
        events.append(f"held {len(meters.clock.invocations)}")
        asyncio.get_running_loop().call_later(0.01, release)

    async def main() -> None:
        mw = meters.middleware(app)  # type: ignore[arg-type]
        await mw({"type": "http", "path": "/x"}, _never, _discard)
        assert len(meters.clock.invocations) == 1  # the response ended, the held work has not
        await asyncio.sleep(0.05)
        assert meters.clock.invocations == {}

    asyncio.run(main())
    assert events == ["held 1"]
    assert meters.clock.invocation_seconds(0.0) > 0


async def _never() -> dict[str, object]:  # pragma: no cover - the app never reads
    raise AssertionError


async def _discard(message: object) -> None:
    return None
