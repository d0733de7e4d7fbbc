"""Apply a profile's timeline to a running cell matrix, and record every fault window.

The controller runs in a thread beside the load (the harness process is
synchronous; Locust runs in its own processes). It walks the
:func:`progressbench.chaos.timeline.schedule` actions, applies each through the one proxy
adapter (:class:`progressbench.chaos.client.ProxyControl`) or, for server faults, through a
callback into the supervisor, and records a :class:`FaultWindow` per fault:
start when it was applied, end when the network (or the service) came back.
The ledger measures ``resume_ms`` from those ends.

Cleanup is unconditional: :meth:`ChaosController.stop` (also on errors and
Ctrl-C) removes every toxic it added and re-enables every proxy it disabled,
so a run never leaves a proxy poisoned.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from progressbench.chaos.client import ProxyControl, ToxicSpec
from progressbench.chaos.profiles import FaultStep, Profile
from progressbench.chaos.timeline import Action, scaled_attributes, schedule

from progressbench.core.errors import ChaosError
from progressbench.core.events import FaultWindow

log = logging.getLogger(__name__)

#: Runs a server fault and returns (start_wall_ns, back_wall_ns).
ServerFault = Callable[[FaultStep], tuple[int, int]]
#: The highest step any job of the cell has committed so far (-1: no job exists yet).
ProgressProbe = Callable[[], int]
#: How many jobs the cell's phones have asked for so far.
JobCount = Callable[[], int]


@dataclass
class ChaosController:
    control: ProxyControl
    profile: Profile
    time_scale: float
    #: Proxy names per phone cell (one per client-facing service).
    cell_proxies: Sequence[Sequence[str]]
    dispatch_proxy: str | None
    server_fault: ServerFault
    progress: ProgressProbe
    #: The timeline's clock waits until ``phones`` jobs exist (every phone's app is open and has
    #: asked for its first job), at most ``start_bound_s`` real seconds, then until the first.
    jobs: JobCount | None = None
    phones: int = 1
    start_bound_s: float = 30.0
    windows: list[FaultWindow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _open: dict[str, tuple[Action, int]] = field(default_factory=dict)
    #: Faults whose window closed but which linger until their removal (a released blackhole).
    _released: dict[str, Action] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"chaos-{self.profile.name}", daemon=True)
        self._thread.start()

    def stop(self) -> list[FaultWindow]:
        """End the timeline: undo every open fault, close its window, return all windows."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            for key, (action, started) in list(self._open.items()):
                try:
                    self._undo(action)
                except ChaosError as exc:
                    self.errors.append(f"cleanup of {key}: {exc}")
                self._close_window(action, started)
            self._open.clear()
            for key, action in list(self._released.items()):
                try:
                    self._undo(action)
                except ChaosError as exc:
                    self.errors.append(f"cleanup of {key}: {exc}")
            self._released.clear()
        return list(self.windows)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        # The timeline's clock starts once the phones have asked for their jobs, not with the
        # cell: Locust and its agent take a second or more to start, and each app signs its
        # user in first. Those are real work at any time scale (a password hash is ~0.1 s of
        # CPU), so at a small scale a burst of sign-ins would otherwise span the first fault
        # offsets, which time the job, not the app's start-up.
        # An outage of the API's dispatch at 0 (a bad deploy, a partition) is the deployment's:
        # it is in place before any phone has a job, since each job is dispatched as it is
        # created (waiting for the phones' jobs let them through: 0 of 3 stuck, in CI). Its end
        # still counts from the phones' start, like every other offset.
        try:
            early = [
                a
                for a in schedule(self.profile, self.time_scale, 0)
                if a.kind == "apply" and a.at_s == 0 and a.step.target == "dispatch"
            ]
            with self._lock:
                for action in early:
                    self._do(action)
            bound = time.monotonic() + self.start_bound_s
            while not self._phones_started(bound):
                if self._stop.wait(0.02):
                    return
            self._t0 = time.monotonic()
            for cycle in itertools.count():
                for action in schedule(self.profile, self.time_scale, cycle):
                    if action in early:
                        continue
                    if not self._wait_until_due(action):
                        return
                    with self._lock:
                        if self._stop.is_set():
                            return
                        self._do(action)
                if not self.profile.repeat_every:
                    return
        except Exception as exc:  # recorded and reported; stop() still cleans up
            log.exception("chaos timeline %s failed", self.profile.name)
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _phones_started(self, bound: float) -> bool:
        if self.jobs is not None and time.monotonic() < bound:
            return self.jobs() >= self.phones
        return self.progress() >= 0

    def _wait_until_due(self, action: Action) -> bool:
        if action.at_s is None:  # a server fault timed against job progress
            target = action.step.at_step or 0
            while not self._stop.is_set():
                if self.progress() >= target:
                    return True
                self._stop.wait(0.05)
            return False
        delay = self._t0 + action.at_s - time.monotonic()
        return not self._stop.wait(max(delay, 0.0))

    def _proxies(self, action: Action) -> list[str]:
        if action.step.target == "dispatch":
            return [self.dispatch_proxy] if self.dispatch_proxy else []
        assert action.cell is not None
        return list(self.cell_proxies[action.cell])

    def _do(self, action: Action) -> None:
        step = action.step
        if step.is_server_fault:
            start, back = self.server_fault(step)
            self.windows.append(
                FaultWindow(kind=f"worker {step.fault}", start_wall_ns=start, end_wall_ns=back)
            )
            return
        if action.kind == "release":
            opened = self._open.pop(action.key, None)
            if opened is not None:
                self._release(opened[0])
                self._released[action.key] = opened[0]
                self._close_window(opened[0], opened[1])
            return
        if action.kind == "remove":
            released = self._released.pop(action.key, None)
            if released is not None:
                self._undo(released)
            opened = self._open.pop(action.key, None)
            if opened is not None:
                self._undo(opened[0])
                self._close_window(opened[0], opened[1])
            return
        for proxy in self._proxies(action):
            if step.fault == "down":
                self.control.set_enabled(proxy, False)
            else:
                self.control.add_toxic(
                    proxy,
                    ToxicSpec(
                        type=step.fault,
                        stream=step.stream,
                        attributes=scaled_attributes(step.attributes, self.time_scale),
                        toxicity=step.toxicity,
                        name=action.key,
                    ),
                )
        self._open[action.key] = (action, time.time_ns())

    def _release(self, action: Action) -> None:
        """The network is back: a lingering toxic lets connections through once their TCP would."""
        attributes = scaled_attributes({**action.step.attributes, "released": 1}, self.time_scale)
        for proxy in self._proxies(action):
            self.control.update_toxic(proxy, action.key, attributes=attributes)

    def _undo(self, action: Action) -> None:
        for proxy in self._proxies(action):
            if action.step.fault == "down":
                self.control.set_enabled(proxy, True)
            else:
                self.control.remove_toxic(proxy, action.key, missing_ok=True)

    def _close_window(self, action: Action, started: int) -> None:
        where = "dispatch " if action.step.target == "dispatch" else ""
        self.windows.append(
            FaultWindow(
                kind=f"{where}{action.step.fault}",
                start_wall_ns=started,
                end_wall_ns=time.time_ns(),
                cell=action.cell,
            )
        )


def validate_against(control: ProxyControl, profiles: Sequence[Profile]) -> None:
    """Before a run: every toxic each profile needs exists on this proxy server."""
    for profile in profiles:
        for toxic in sorted(profile.toxic_types):
            control.require(toxic)
