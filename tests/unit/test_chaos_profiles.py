"""Fault profiles are validated data; timelines expand per cell and scale."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
from progressbench.chaos.controller import ChaosController
from progressbench.chaos.profiles import BUILTIN, FaultStep, Profile, get_profile
from progressbench.chaos.timeline import scaled_attributes, schedule
from pydantic import ValidationError

from progressbench.core.config import RunConfig
from progressbench.core.errors import ConfigError

REQUIRED = {
    "clean",
    "tunnel",
    "handoff",
    "sleep",
    "cgnat",
    "flaky-3g",
    "sigterm",
    "request-timeout",
    "dispatch-loss",
}


def test_every_required_profile_exists_with_a_source() -> None:
    """The issue's nine profiles are built in, and every faulty one cites its numbers."""
    assert REQUIRED <= set(BUILTIN)
    for profile in BUILTIN.values():
        if profile.steps or profile.timing:
            assert profile.sources, profile.name


def test_unknown_profile_names_the_known_ones() -> None:
    """A typo gets a config error listing what exists."""
    with pytest.raises(ConfigError, match="tunnel"):
        get_profile("tunnnel")


def test_steps_are_validated() -> None:
    """A server fault on the phones' proxy, or a toxic on a worker, is refused at load."""
    with pytest.raises(ValidationError):
        FaultStep(fault="sigterm", target="phones")
    with pytest.raises(ValidationError):
        FaultStep(fault="latency", target="worker")
    with pytest.raises(ValidationError):
        FaultStep.model_validate({"at": 1, "fault": "blackhole", "for": -1})


def test_cells_get_staggered_windows_and_removals() -> None:
    """Each cell runs the timeline offset by the stagger; removals come at start + for."""
    profile = Profile(
        name="t",
        description="",
        cells=3,
        stagger=2,
        steps=(FaultStep.model_validate({"at": 4, "fault": "blackhole", "for": 10}),),
    )
    actions = schedule(profile, time_scale=0.5)
    applies = [(a.cell, a.at_s) for a in actions if a.kind == "apply"]
    removes = [(a.cell, a.at_s) for a in actions if a.kind == "remove"]
    assert applies == [(0, 2.0), (1, 3.0), (2, 4.0)]
    assert removes == [(0, 7.0), (1, 8.0), (2, 9.0)]
    assert [a.at_s for a in actions] == sorted(a.at_s for a in actions if a.at_s is not None)


def test_server_faults_happen_once_and_may_wait_for_a_step() -> None:
    """A sigterm at step 4 is one stack-wide action with no clock time."""
    [action] = schedule(get_profile("sigterm"), time_scale=0.05)
    assert action.cell is None and action.at_s is None and action.step.at_step == 4


def test_duration_attributes_scale_and_never_become_zero() -> None:
    """latency/timeout scale with the run; 0 (forever) stays 0; rates go up by the same factor
    (a transfer takes its real time × scale); sizes do not change."""
    scaled = scaled_attributes(
        {"latency": 250, "timeout": 0, "rate": 150, "jitter": 5, "rto_max": 120_000, "bytes": 900}, 0.05
    )
    assert scaled == {"latency": 12, "timeout": 0, "rate": 3000, "jitter": 1, "rto_max": 6000, "bytes": 900}


def test_a_repeating_profile_runs_its_phone_steps_every_cycle() -> None:
    """Later cycles repeat the phones' faults (new toxic names) repeat_every apart; server faults once."""
    profile = Profile(
        name="commute",
        description="x",
        steps=(
            FaultStep(at=2, fault="down", for_s=1),
            FaultStep(at_step=3, fault="sigterm", target="worker"),
        ),
        repeat_every=10,
    )
    first = schedule(profile, 0.5, cycle=0)
    second = schedule(profile, 0.5, cycle=1)
    assert [(a.kind, a.at_s) for a in first if a.step.target == "phones"] == [("apply", 1.0), ("remove", 1.5)]
    assert [(a.kind, a.at_s) for a in second] == [("apply", 6.0), ("remove", 6.5)]
    assert {a.key for a in first}.isdisjoint({a.key for a in second})
    assert any(a.step.is_server_fault for a in first)


def test_repeat_every_must_leave_room_for_a_cycle() -> None:
    """A period shorter than one cycle (stagger included) would overlap faults: refused on load."""
    with pytest.raises(ValidationError, match="repeat_every"):
        Profile(
            name="x",
            description="x",
            steps=(FaultStep(at=8, fault="down", for_s=3),),
            cells=2,
            stagger=5,
            repeat_every=15,
        )


def test_mobile_profiles_repeat_with_room_for_a_restarted_job() -> None:
    """tunnel, handoff and sleep come back each cycle: later jobs meet them, yet a job that had to start
    again after the last fault of a cycle has a quiet stretch of a whole mean job to finish in."""
    mean_job = RunConfig(transports=("sse",)).job.mean_duration_s
    for name in ("tunnel", "handoff", "sleep"):
        profile = get_profile(name)
        first = [a for a in schedule(profile, 1.0, 0) if a.cell == 0]
        ends = "release" if any(a.kind == "release" for a in first) else "remove"  # the network is back
        last_end = max((a.at_s or 0.0) for a in first if a.kind == ends)
        first_again = min((a.at_s or 0.0) for a in schedule(profile, 1.0, 1) if a.cell == 0)
        assert first_again - last_end >= mean_job, name
        assert profile.repeat_every <= last_end + 2 * mean_job, name


def test_a_blackhole_with_backoff_is_released_at_its_end_and_removed_a_cap_later() -> None:
    """The window ends when the tunnel does (release); the toxic leaves rto_max later, both scaled."""
    profile = Profile(
        name="t",
        description="x",
        steps=(
            FaultStep(
                at=10, fault="blackhole", for_s=60, attributes={"rto_initial": 1000, "rto_max": 120_000}
            ),
            FaultStep(at=100, fault="blackhole", for_s=5),
        ),
    )
    actions = [(a.kind, a.step_index, a.at_s) for a in schedule(profile, 0.1)]
    assert actions == [
        ("apply", 0, 1.0),
        ("release", 0, 7.0),
        ("apply", 1, 10.0),
        ("remove", 1, 10.5),
        ("remove", 0, 19.0),
    ]


def test_mobile_faults_keep_their_real_world_lengths_at_every_scale() -> None:
    """tunnel 90 s (subway 60-180 s), cgnat 60 s idle, screen off 60 s: data in real seconds, so at
    any scale the tunnel outlasts sse's 45 s watchdog and the cgnat cut falls inside the benchmark
    job's longest silence, yet above every heartbeat; the tunnel restores with TCP back-off."""
    shape = RunConfig(transports=("sse",)).job
    watchdog_s, heartbeat_s = 3 * 15.0, 25.0
    for scale in (0.05, 0.1, 1.0):
        [apply, release, _] = [a for a in schedule(get_profile("tunnel"), scale) if a.cell == 0]
        assert release.kind == "release"
        outage = (release.at_s or 0) - (apply.at_s or 0)
        assert outage == pytest.approx(90 * scale) and outage > watchdog_s * scale
    assert get_profile("tunnel").steps[0].attributes["rto_initial"] == 1000
    idle_ms = get_profile("cgnat").steps[0].attributes["timeout"]
    assert heartbeat_s * 1000 < idle_ms < shape.longest_step_s * 1000
    assert scaled_attributes({"timeout": idle_ms}, 0.05) == {"timeout": 3000}
    assert get_profile("sleep").steps[0].for_s == 60


def test_the_timeline_clock_waits_until_every_phone_has_asked_for_its_job() -> None:
    """Sign-ins are real CPU at any time scale: the profile's offsets time the jobs, not them."""
    asked = [0]
    controller = ChaosController(
        control=cast(Any, None),
        profile=get_profile("handoff"),
        time_scale=0.05,
        cell_proxies=[],
        dispatch_proxy=None,
        server_fault=lambda step: (0, 0),
        progress=lambda: 0,
        jobs=lambda: asked[0],
        phones=3,
    )
    later = time.monotonic() + 60
    assert not controller._phones_started(later)
    asked[0] = 2
    assert not controller._phones_started(later)
    asked[0] = 3
    assert controller._phones_started(later)
    asked[0] = 1
    assert controller._phones_started(time.monotonic() - 1), "past the bound, the first job starts it"


class _Recorder:
    """The proxy control as far as the timeline uses it: what was asked, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def add_toxic(self, proxy: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("add", proxy))

    def remove_toxic(self, proxy: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("remove", proxy))

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self.calls.append(("enable" if enabled else "disable", proxy))


def test_an_outage_of_the_dispatch_is_in_place_before_any_phone_has_a_job() -> None:
    """dispatch-loss is the deployment's fault: its clock is the cell's, not the phones' first jobs."""
    control = _Recorder()
    controller = ChaosController(
        control=cast(Any, control),
        profile=get_profile("dispatch-loss"),
        time_scale=0.05,
        cell_proxies=[],
        dispatch_proxy="pb-dispatch",
        server_fault=lambda step: (0, 0),
        progress=lambda: -1,
        jobs=lambda: 0,  # no phone has asked for a job yet
        phones=3,
    )
    controller.start()
    try:
        deadline = time.monotonic() + 10
        while not control.calls and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        controller.stop()
    assert control.calls and control.calls[0] == ("add", "pb-dispatch"), control.calls
