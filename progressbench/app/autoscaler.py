"""Scale-out at the edge: the fronts, the control loop, and the processes it starts and stops.

One thread of the supervisor runs an asyncio loop holding a
:class:`~progressbench.app.front.Front` per fronted service (``api``,
``worker``) and a control loop that, every tick (1 s, scaled), asks
:func:`progressbench.core.autoscale.decide` what to do given each serving
instance's in-flight requests, the requests waiting at the front and the
instances still starting, then does it:

* **start**: wait the scaled cold start (less what a Python process takes
  to start here, as a fault's replacement does), spawn the instance, wait
  until it accepts, tell the front;
* **stop**: mark the instance draining (the front sends it nothing new),
  bank its meters, SIGTERM it with the platform's grace.

An idle candidate is checked against the store first: a worker still
holding a running job (background work after a 202, invisible to the
front) is kept, as Cloud Run's CPU signal would keep it.

A Python instance takes seconds of real time to start on a busy machine,
which no time scale shortens, while the modelled cold start at scale 0.1
is 0.2 s. So once a service's serving instances are half full, one warm
*standby* process is started and held back (no traffic, not counted, not
billed); a start then takes the standby after the scaled cold start and
warms the next one. Without a standby a start spawns a process as a
fault's replacement does, and takes what it takes.

Instance counts (live processes plus starts in their cold start) are kept
as a :class:`~progressbench.core.autoscale.Timeline` per role: the run
reports them per cell and prices instance-based billing by their integral.

Faults keep working unchanged: a SIGTERM/SIGKILL fault stops the busiest
worker and starts its replacement through the same fleet, after the same
cold start; the front stops routing to the dead one at once (its port
refuses) and routes to the replacement once it is ready.

Shutdown story: :meth:`Autoscaler.close` cancels the loop's tasks (fronts
close their connections, pending starts are abandoned) and joins the
thread; the fleet's own teardown stops whatever was started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from progressbench.app.faults import ServerFaults, running_jobs
from progressbench.app.front import Backend, Front, FrontSettings
from progressbench.app.instances import Fleet, Instance, Role
from progressbench.core.autoscale import InstanceCounts, InstanceState, ScalePolicy, Timeline, counts, decide
from progressbench.core.config import Timing
from progressbench.core.errors import StackError
from progressbench.kit.meters import REJECT_RETRY_AFTER_S, retry_after_header

log = logging.getLogger(__name__)

#: How often the autoscaler looks (real seconds at scale 1; Cloud Run evaluates every few seconds).
TICK_S = 1.0
#: Cloud Run queues a request that finds no free instance for up to 10 s, then answers 429.
QUEUE_S = 10.0
#: Warm a standby once the demand reaches this share of the serving instances' capacity.
WARM_AT = 0.5
#: A queued request waits at least this long in real seconds: a Python instance takes about
#: that to start here, which no time scale shortens.
MIN_QUEUE_S = 5.0


@dataclass
class _Role:
    policy: ScalePolicy
    front: Front
    timeline: Timeline = field(default_factory=Timeline)
    idle_since: dict[str, float] = field(default_factory=dict)
    pending: int = 0
    #: warm spares ready to serve (see the module docstring) and spares being started
    standby: list[Instance] = field(default_factory=list)
    warming: int = 0
    started: int = 0
    stopped: int = 0
    #: starts given up: the process did not become ready within the stack's start-up bound
    failed: int = 0


class Autoscaler:
    """Fronts and autoscaling of some services of a fleet (see the module docstring)."""

    def __init__(
        self,
        fleet: Fleet,
        faults: ServerFaults,
        timing: Timing,
        policies: Mapping[Role, ScalePolicy],
        database_url: Callable[[], str],
    ) -> None:
        self.fleet = fleet
        self.faults = faults
        self.timing = timing
        self._database_url = database_url
        settings = {
            role: FrontSettings(
                concurrency=policy.concurrency,
                queue_s=max(timing.scaled(QUEUE_S), MIN_QUEUE_S),
                retry_after=retry_after_header(timing.scaled(REJECT_RETRY_AFTER_S)),
                header_timeout_s=timing.header_timeout(),
                short_weight=min(timing.time_scale, 1.0),
            )
            for role, policy in policies.items()
        }
        self.roles = {
            role: _Role(policy, Front(role, settings[role], functools.partial(self.backends, role)))
            for role, policy in policies.items()
        }
        self.tick_s = max(timing.scaled(TICK_S), 0.05)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._paused = threading.Event()
        self._tasks: set[asyncio.Task[object]] = set()
        self._record_lock = threading.Lock()
        #: Each scale-out start as run: real seconds from the decision to a serving instance. The
        #: modelled cold start is scaled, a Python process's start-up is not; the run lists the
        #: slowest as a distortion of the cold start (a fault's replacement is timed by the faults).
        self.startups: list[float] = []

    # ------------------------------------------------------------------ what the front routes to

    def backends(self, role: Role) -> list[Backend]:
        """Serving instances of ``role``: started by anyone, ready, alive, not being stopped."""
        out: list[Backend] = []
        for instance in list(self.fleet.services[role].instances):
            if self._serves(instance) and instance.url is not None:
                parts = urlsplit(instance.url)
                out.append(Backend(instance.name, parts.hostname or "127.0.0.1", parts.port or 80))
        return out

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Serve every front on its service socket and start the control loop (in a thread)."""
        self._thread = threading.Thread(target=self._run, name="autoscaler", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise StackError("the service fronts did not start")
        for role in self.roles:
            self._record(role)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            for role, state in self.roles.items():
                self._spawn(state.front.serve(self.fleet.services[role].socket))
            self._spawn(self._control())
            loop.call_soon(self._ready.set)
            loop.run_forever()
        finally:
            for task in self._tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
            loop.close()

    def _spawn(self, coro: Coroutine[object, object, object]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        """A scaling step that failed is one warning line: the run goes on with the fleet it has."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning("autoscaler: %s", str(error).splitlines()[0] if str(error) else repr(error))

    def close(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No scaling decision while the body runs (a redeploy replaces every instance itself)."""
        self._paused.set()
        try:
            yield
        finally:
            self._paused.clear()

    # ------------------------------------------------------------------ the control loop

    async def _control(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            if self._paused.is_set():
                continue
            for role in self.roles:
                try:
                    await self._tick(role)
                except Exception:  # a failed start or stop must not stop the autoscaler
                    log.exception("autoscaling %s", role)

    @staticmethod
    def _serves(instance: Instance) -> bool:
        return (
            instance.ready
            and not instance.draining
            and not instance.standby
            and instance.url is not None
            and instance.alive()
        )

    def _live(self, role: Role) -> list[Instance]:
        """Live instances that count: serving, starting or stopping (warm spares do not)."""
        return [i for i in self.fleet.services[role].live() if not i.standby]

    async def _tick(self, role: Role) -> None:
        state = self.roles[role]
        now = time.monotonic()
        live = self._live(role)
        serving = [i for i in live if self._serves(i)]
        starting = state.pending + sum(1 for i in live if not i.ready and not i.draining)
        views = []
        for instance in serving:
            in_flight = state.front.load(instance.name)
            if state.front.in_flight(instance.name):
                state.idle_since.pop(instance.name, None)
            else:
                state.idle_since.setdefault(instance.name, now)
            views.append(InstanceState(instance.name, in_flight, state.idle_since.get(instance.name)))
        decision = decide(state.policy, views, starting, state.front.waiting, now)
        if decision.start or decision.stop:
            log.info(
                "%s: start %d, stop %s (in flight %d on %d serving, %d waiting, %d starting)",
                role,
                decision.start,
                list(decision.stop),
                sum(v.in_flight for v in views),
                len(views),
                state.front.waiting,
                starting,
            )
        if decision.stop:
            working = await asyncio.to_thread(self._working, decision.stop)
            for name in working:  # busy with a job: idle from now on at the earliest
                state.idle_since[name] = now
            for instance in serving:
                if instance.name in decision.stop and instance.name not in working:
                    instance.draining = True
                    state.idle_since.pop(instance.name, None)
                    state.stopped += 1
                    self._spawn(self._stop(role, instance))
        for _ in range(decision.start):
            state.pending += 1
            state.started += 1
            self._spawn(self._start(role, timed=True))
        demand = sum(v.in_flight for v in views) + state.front.waiting
        room = len(serving) + starting + decision.start < state.policy.max_instances
        if (
            room
            and not state.standby
            and not state.warming
            and serving
            and demand >= WARM_AT * state.policy.capacity(len(serving))
        ):
            state.warming += 1
            self._spawn(self._warm(role))
        self._record(role)

    def _working(self, names: tuple[str, ...]) -> set[str]:
        """Which of these instances hold a running job in the store (all of them if it cannot tell)."""
        try:
            running = running_jobs(self._database_url())
        except StackError as exc:
            log.warning("keeping idle instances: %s", exc)
            return set(names)
        return {name for name in names if running.get(name)}

    async def _warm(self, role: Role) -> None:
        """Start a standby: spawned, ready, held back (stopped again if it never gets ready)."""
        state = self.roles[role]
        try:
            instance = await asyncio.to_thread(self.fleet.start, role, standby=True)
            try:
                await asyncio.to_thread(self.fleet.wait_ready, instance)
            except StackError as error:
                state.failed += 1
                log.warning("autoscaler: standby %s; stopped it", str(error).splitlines()[0])
                instance.draining = True
                await asyncio.to_thread(self.faults.terminate, instance)
                return
            state.standby.append(instance)
        finally:
            state.warming -= 1

    def reserve(self, role: Role) -> bool:
        """A fault is about to kill an instance of ``role``: count its replacement as starting."""
        if role not in self.roles:
            return False
        with self._record_lock:
            self.roles[role].pending += 1
            self.roles[role].started += 1
        return True

    def replace_reserved(self, role: Role, timeout_s: float = 120.0) -> Instance:
        """Start the reserved replacement the way a scale-up starts (standby first); once ready."""
        if self._loop is None:
            raise StackError("the autoscaler is not running")
        started = asyncio.run_coroutine_threadsafe(self._start(role), self._loop).result(timeout_s)
        if started is None:
            raise StackError(f"no replacement {role} instance started")
        return started

    async def _start(self, role: Role, timed: bool = False) -> Instance | None:
        """Cold start, spawn, ready; ``pending`` counts it until its process exists.

        ``timed``: a scale-out start, kept in :attr:`startups` once it serves.
        """
        state = self.roles[role]
        began = time.monotonic()
        while state.standby:
            spare = state.standby.pop(0)
            if not spare.alive():
                continue
            try:
                await asyncio.sleep(self.timing.scaled(self.timing.cold_start_s))
                spare.standby = False
            finally:
                with self._record_lock:
                    state.pending -= 1
                self._record(role)
            await state.front.capacity_changed()
            if timed:
                self.startups.append(time.monotonic() - began)
            return spare
        spawned = threading.Event()
        process: list[Instance] = []

        def on_spawned(instance: Instance) -> None:
            with self._record_lock:
                state.pending -= 1
                process.append(instance)
                spawned.set()

        try:
            fresh = await asyncio.to_thread(self.faults.start_cold, role, None, on_spawned)
        except StackError as error:
            # Cloud Run stops an instance that fails its start-up probe and counts the start as
            # failed; the next tick decides again with the demand it then sees.
            state.failed += 1
            log.warning("autoscaler: %s; stopped it", str(error).splitlines()[0])
            for stalled in process:
                stalled.draining = True
                await asyncio.to_thread(self.faults.terminate, stalled)
            return None
        finally:
            with self._record_lock:
                if not spawned.is_set():
                    state.pending -= 1
            self._record(role)
        await state.front.capacity_changed()
        if timed:
            self.startups.append(time.monotonic() - began)
        return fresh

    async def _stop(self, role: Role, instance: Instance) -> None:
        await self.roles[role].front.capacity_changed()
        await asyncio.to_thread(self.faults.terminate, instance)
        self._record(role)

    def _record(self, role: Role) -> None:
        """The role's count now: live processes plus starts in their cold start (either thread)."""
        state = self.roles[role]
        with self._record_lock:
            state.timeline.record(time.monotonic(), len(self._live(role)) + state.pending)

    def settle(self, timeout_s: float = 60.0) -> None:
        """Stop every idle instance above each role's floor now, and wait until they are gone.

        Between cells: each cell starts from the floor, as on a fresh
        revision, instead of inheriting the last cell's idle instances.
        """
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._settle(), self._loop).result(timeout_s)

    async def _settle(self) -> None:
        stops = []
        for role, state in self.roles.items():
            serving = [i for i in self._live(role) if i.ready and not i.draining and i.url]
            idle = [i for i in serving if not state.front.in_flight(i.name)]
            spare = len(serving) - state.policy.min_instances
            if spare <= 0 or not idle:
                continue
            names = tuple(i.name for i in idle)
            working = await asyncio.to_thread(self._working, names)
            for instance in [i for i in idle if i.name not in working][:spare]:
                instance.draining = True
                state.idle_since.pop(instance.name, None)
                state.stopped += 1
                stops.append(self._stop(role, instance))
        await asyncio.gather(*stops)

    # ------------------------------------------------------------------ what the run reports

    def counts_since(self, t0: float) -> dict[Role, InstanceCounts]:
        """Every role's instances from ``t0`` (monotonic) until now."""
        for role in self.roles:
            self._record(role)
        with self._record_lock:
            now = time.monotonic()
            return {role: counts(state.timeline, t0, now) for role, state in self.roles.items()}

    def meters(self) -> dict[Role, dict[str, float]]:
        """Per role, cumulative counters of the scale-out (merged into the stack's meters)."""
        out: dict[Role, dict[str, float]] = {}
        for role, state in self.roles.items():
            self._record(role)
            with self._record_lock:
                now = time.monotonic()
                points = state.timeline.points
                seconds = state.timeline.integral(points[0][0], now) if points else 0.0
            out[role] = {
                "pb_autoscaled_instance_seconds_total": seconds,
                "pb_front_rejected_total": float(state.front.stats.rejected),
                "pb_front_queued_total": float(state.front.stats.queued),
                "pb_instances_started_total": float(state.started),
                "pb_instances_stopped_total": float(state.stopped),
                "pb_instance_starts_failed_total": float(state.failed),
            }
        return out
