"""Drive one simulated phone through one job, and keep everything it saw.

The driver owns the clocks: each event a watcher yields is stamped with the
wall clock (``time.time_ns``, same host as the store, for commit-to-receive
latency) and the monotonic clock (for durations). It applies the session
deadline and turns failures into an outcome, so a broken transport produces
a record that says so instead of an exception that loses the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from array import array
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TypeVar, cast

from pydantic import BaseModel, ConfigDict, field_validator

from progressbench.core.config import JobShape, Timing
from progressbench.core.errors import ProgressbenchError
from progressbench.core.events import (
    TERMINAL,
    ClientEvent,
    Observation,
    Progress,
    Resubmitted,
    SessionOutcome,
    SessionRecord,
    Submitted,
)
from progressbench.core.job import JobSpec, plan
from progressbench.transports.http import sign_in_phone
from progressbench.transports.types import ClientSettings, JobRequest, Prepared

log = logging.getLogger(__name__)


_Shared = TypeVar("_Shared", JobShape, Timing)
#: Equal shapes and timings (frozen, hashable models), one object each while any spec holds it.
_SHARED: weakref.WeakValueDictionary[JobShape | Timing, JobShape | Timing] = weakref.WeakValueDictionary()
#: The sets of field names specs were made with, one of each (a handful at most), never mutated.
_FIELDS_SET: dict[frozenset[str], set[str]] = {}


class SessionSpec(BaseModel):
    """One phone's assignment: which job, through which transport, where."""

    model_config = ConfigDict(frozen=True)

    transport: str
    profile: str
    cell: int = 0
    owner: str
    user_index: int
    job_index: int
    seed: int
    shape: JobShape
    timing: Timing
    endpoints: dict[str, str]
    options: dict[str, str] = {}

    @field_validator("shape", "timing", mode="after")
    @classmethod
    def _one_copy(cls, value: _Shared) -> _Shared:
        """The copy other specs already hold: a cell's phones share one shape and one timing.

        Each validated copy costs ~1-4 KB (a shape's waves are models of
        their own), per phone, for the session's whole life: at 10,000 phones
        per load process that is a quarter of the memory a phone may use.
        """
        return cast(_Shared, _SHARED.setdefault(value, value))

    def model_post_init(self, context: object, /) -> None:
        """Share the set of the names of the fields set: specs of one plan set the same ones.

        pydantic keeps one per instance (~730 bytes for ten names), per phone for the
        session's life. Sharing is safe because nothing adds to it in place: the model is
        frozen (assignment raises first) and :meth:`model_copy` copies the set before
        adding the updated names.
        """
        names = frozenset(self.__pydantic_fields_set__)
        shared = _FIELDS_SET.setdefault(names, self.__pydantic_fields_set__)
        object.__setattr__(self, "__pydantic_fields_set__", shared)

    def planned_job_s(self) -> float:
        """The job's own duration as the server plans it (same shape, seed and scale), compressed seconds."""
        return plan(JobSpec(shape=self.shape, seed=self.seed, time_scale=self.timing.time_scale)).duration_s

    def stall_threshold_s(self) -> float:
        """Twice the longest a step may take: longer without news is a stall."""
        return 2.0 * self.shape.step_seconds_max * self.timing.time_scale


#: How long an app's start-up (:class:`Prepared`: a page loading, the user's sign-in) may take
#: before the session gives up, in real seconds, not scaled: what it waits on is real work at any
#: time scale (Chromium starting, a password hash), and it is not part of the job's time.
APP_START_BOUND_S = 120.0


@dataclass(slots=True)
class LiveSession:
    """What a phone has seen so far: kept outside :func:`run_session` so a session that does not
    stop when cancelled (a close hanging on a dead socket) can still be recorded as it stood."""

    started_wall: int = field(default_factory=time.time_ns)
    started_mono: int = field(default_factory=time.monotonic_ns)
    # Each receipt as its event and two int64 stamps (:meth:`add`): a validated Observation costs
    # ~700 bytes, an (event, wall, mono) tuple ~150, this ~24 (a heartbeat's event is one shared
    # object), and a phone holding a stream for minutes gathers a heartbeat every few seconds.
    # Every receipt is kept; the Observations are built once, when the session is recorded.
    events: list[ClientEvent] = field(default_factory=list)
    walls: array[int] = field(default_factory=lambda: array("q"))
    monos: array[int] = field(default_factory=lambda: array("q"))
    job_id: str | None = None
    extra: list[str] = field(default_factory=list)
    coalescing: bool = False
    #: The record has been handed on (set by whoever hands it on): never record a session twice.
    recorded: bool = False

    def restart_clock(self) -> None:
        self.started_wall, self.started_mono = time.time_ns(), time.monotonic_ns()

    def add(self, event: ClientEvent, wall_ns: int, mono_ns: int) -> None:
        """One receipt, stamped (wall clock for latency, monotonic for durations)."""
        self.events.append(event)
        self.walls.append(wall_ns)
        self.monos.append(mono_ns)

    def observations(self) -> list[Observation]:
        """Every receipt so far as an :class:`Observation`, in the order they came."""
        return [Observation.of(*receipt) for receipt in zip(self.events, self.walls, self.monos, strict=True)]


def session_record(
    spec: SessionSpec, live: LiveSession, outcome: SessionOutcome, error: str | None
) -> SessionRecord:
    """The phone's record from what it saw: at the session's end, or as it stood when it was cut off."""
    return SessionRecord(
        session_id=uuid.uuid4().hex,
        transport=spec.transport,
        profile=spec.profile,
        cell=spec.cell,
        owner=spec.owner,
        user_index=spec.user_index,
        job_index=spec.job_index,
        job_id=live.job_id,
        extra_job_ids=list(live.extra),
        started_wall_ns=live.started_wall,
        ended_wall_ns=time.time_ns(),
        started_mono_ns=live.started_mono,
        ended_mono_ns=time.monotonic_ns(),
        outcome=outcome,
        error=error,
        stall_threshold_s=spec.stall_threshold_s(),
        time_scale=spec.timing.time_scale,
        planned_job_s=spec.planned_job_s(),
        coalescing=live.coalescing,
        observations=live.observations(),
    )


async def run_session(spec: SessionSpec, live: LiveSession | None = None) -> SessionRecord:
    """One phone, one job: its record, whatever happened (``live``, when given, is filled as it goes)."""
    # Here, not at the top: the Locust processes import this module for SessionSpec and never run
    # a session (the registry is light; the watcher's module loads on first use of ``client``).
    from progressbench.transports.registry import resolve

    transport, variant = resolve(spec.transport)
    settings = ClientSettings(
        endpoints=spec.endpoints, timing=spec.timing, variant=variant, options=dict(spec.options)
    )
    watcher = transport.client(settings)
    request = JobRequest(
        owner=spec.owner, shape=spec.shape, seed=spec.seed, time_scale=spec.timing.time_scale
    )
    live = live if live is not None else LiveSession()
    live.coalescing = bool(getattr(watcher, "coalesces", False))
    live.restart_clock()
    outcome: SessionOutcome = "deadline"
    error: str | None = None
    deadline = spec.timing.scaled(spec.timing.session_deadline_s)
    stream = watcher.session(request)
    # The app's start-up, entered by hand: an AsyncExitStack (its deque) costs ~750 bytes per phone.
    app: AbstractAsyncContextManager[None] | None = None
    try:
        if isinstance(watcher, Prepared):  # the app's own start-up, before the user taps
            starting = watcher.prepared(spec.owner)
            async with asyncio.timeout(max(deadline, APP_START_BOUND_S)):
                await starting.__aenter__()
            app = starting
            live.restart_clock()
        api = spec.endpoints.get("api")
        if api:  # the app signs in once, before its first job: not part of any job's time
            await sign_in_phone(api, spec.owner, spec.timing)
            live.restart_clock()
        async with asyncio.timeout(deadline):
            async for event in stream:
                live.add(event, time.time_ns(), time.monotonic_ns())
                if isinstance(event, Submitted | Resubmitted):
                    if live.job_id is None:
                        live.job_id = event.job_id
                    elif event.job_id != live.job_id and event.job_id not in live.extra:
                        live.extra.append(event.job_id)
                elif (
                    isinstance(event, Progress)
                    and event.kind in TERMINAL
                    and event.job_id in {live.job_id, *live.extra}
                ):
                    outcome = "terminal"
                    break
    except TimeoutError:
        outcome = "deadline"
    except asyncio.CancelledError:
        # The run is stopping: keep what this phone saw, marked as such.
        outcome, error = "interrupted", "run interrupted before the session ended"
    except ProgressbenchError as exc:
        outcome, error = "error", str(exc)
    except Exception as exc:  # a watcher bug must not lose the session's record
        log.exception("session %s/%s failed", spec.owner, spec.job_index)
        outcome, error = "error", f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await stream.aclose()  # type: ignore[attr-defined]
        if app is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await app.__aexit__(None, None, None)
    return session_record(spec, live, outcome, error)
