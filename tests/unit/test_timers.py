"""Distortions: timers that cannot follow the time scale, computed from what each timer is."""

from __future__ import annotations

from pathlib import Path

import pytest
from progressbench.chaos.timeline import scaled_attributes
from progressbench.transports.realtime.config import WatcherOptions, server_idle_timeout
from progressbench.transports.registry import REGISTRY
from progressbench.transports.timers import CONNECT_TIMER, READ_TIMER

from progressbench.app.cell_result import CellResult
from progressbench.app.scoring import cell_distortions
from progressbench.core.config import Timing
from progressbench.core.timers import Distortion, Timer, distortions, measured
from progressbench.kit.meters import Meters


def test_a_scaled_timer_is_no_distortion_at_any_scale() -> None:
    assert distortions([Timer("job heartbeat", 2.0)], 0.05) == []
    assert distortions([Timer("job heartbeat", 2.0)], 1.0) == []


def test_a_floor_distorts_only_below_the_scale_where_it_bites() -> None:
    """10 s with a 5 s floor: fine at 0.5 and above; at 0.05 it lasts 5 s, 100 real seconds."""
    assert distortions([CONNECT_TIMER], 0.5) == []
    assert distortions([CONNECT_TIMER], 0.05) == [Distortion("phone HTTP connect timeout", 10.0, 100.0)]
    assert distortions([READ_TIMER], 0.1) == [Distortion("phone HTTP read timeout", 10.0, 20.0)]


def test_a_library_constant_distorts_at_every_scale_but_one() -> None:
    ping = Timer("websockets keepalive ping", 20.0, fixed_s=20.0)
    assert distortions([ping], 1.0) == []
    assert distortions([ping], 0.05) == [Distortion("websockets keepalive ping", 20.0, 400.0)]


def test_small_rounding_is_tolerated_and_names_are_listed_once() -> None:
    near = Timer("close", 2.0, floor_s=0.102)  # 0.1 s scaled: 2 % off
    twice = [Timer("a", 1.0, fixed_s=1.0), Timer("a", 1.0, fixed_s=1.0)]
    assert distortions([near], 0.05) == []
    assert len(distortions(twice, 0.1)) == 1
    with pytest.raises(ValueError):
        distortions(twice, 0.0)


def test_a_measured_start_up_distorts_only_when_slower_than_the_scaled_cold_start() -> None:
    """A replacement that took 1.5 s where a 2 s cold start at 0.1 allows 0.2 s: 15 real seconds."""
    assert measured("cold start", 2.0, []) is None
    slow = measured("cold start", 2.0, [0.9, 1.5])
    fast = measured("cold start", 2.0, [0.1])
    assert slow is not None and fast is not None
    assert distortions([slow], 0.1) == [Distortion("cold start", 2.0, 15.0)]
    assert distortions([fast], 0.1) == []


def test_every_transport_declares_what_it_cannot_scale(tmp_path: Path) -> None:
    """At 0.05 every transport's phone has at least a floored connect timeout; realtime's library adds
    its unscalable keepalive; the cell lists them with the measured cold start of a replacement."""
    for transport in REGISTRY.values():
        cell = CellResult(transport.name, "clean", sessions_path=tmp_path)
        assert cell_distortions(cell, 0.05), transport.name
    cell = CellResult("realtime", "sigterm", sessions_path=tmp_path)
    cold = measured("replacement instance cold start", 2.0, [1.0])
    assert cold is not None
    cell.timers = [cold]
    found = {d.timer: d for d in cell_distortions(cell, 0.05)}
    assert found["realtime client websockets keepalive ping"].effective_real_s == 400.0
    assert found["replacement instance cold start"].effective_real_s == 20.0
    assert "realtime server idle timeout" in found  # floored at the heartbeat's ratio
    assert cell_distortions(CellResult("polling", "clean", sessions_path=tmp_path), 1.0) == []


def test_timers_the_code_owns_follow_the_scale() -> None:
    """A refusal's Retry-After, the realtime client's heartbeat and push timeout, bandwidth rates:
    scaled; the realtime server's idle timeout keeps its 60:25 ratio to the library's heartbeat floor."""
    slow = Timing(time_scale=0.05)
    assert Meters("worker", 80, slow).retry_after == "0.050"
    assert Meters("worker", 80, Timing()).retry_after == "1"
    opts = WatcherOptions.parse({}, slow)
    assert (opts.heartbeat_s, opts.push_timeout_s) == (1.25, 0.5)
    assert server_idle_timeout(slow) == 36.0 and server_idle_timeout(Timing()) == 60.0
    assert scaled_attributes({"rate": 150}, 0.05) == {"rate": 3000}


def test_a_distortion_that_crosses_a_fault_window_flips_the_verdict_and_one_that_does_not_is_a_number() -> (
    None
):
    """A 20 s ping stretched to 200 s is on the other side of CGNAT's 60 s idle cut; 10 s → 20 s is not."""
    from progressbench.core.timers import Distortion, order_flips

    ping = Distortion("websockets ping", 20.0, 200.0)
    connect = Distortion("phone HTTP connect timeout", 10.0, 20.0)
    spans = [("the cgnat window", 60.0), ("the job's planned length", 45.0)]
    notes = order_flips([ping, connect], spans)
    assert len(notes) == 2 and all(n.startswith("websockets ping: 20 s in the world, 200 s") for n in notes)
    assert "the cgnat window (60 s)" in notes[0] and "planned length (45 s)" in notes[1]
    assert order_flips([connect], spans) == []
    assert order_flips([Distortion("floor", 60.0, 60.0)], spans) == []


def test_profiles_name_the_durations_a_verdict_turns_on() -> None:
    """CGNAT's 60 s idle cut and sleep's 5 s reclaim are spans as much as a tunnel's 90 s."""
    from progressbench.chaos.profiles import get_profile

    assert get_profile("cgnat").spans() == [("the idle cut", 60.0)]
    assert ("the pause_reader socket reclaim", 5.0) in get_profile("sleep").spans()
    assert get_profile("tunnel").spans() == [("the blackhole window", 90.0)]
    assert get_profile("clean").spans() == []
