"""What a transport's client watcher yields, and what a session records.

A watcher reports everything it learns as typed events: the job it created,
each progress event, every loss and regain of its connection, resumes, gap
signals, and findings about its own client library. It never times them:
the session driver stamps each event with a wall clock (for commit-to-receive
latency against the store's ``committed_at``, same host) and a monotonic clock
(for durations), and the ledger turns the stamped list into measurements.
Watchers never import the ledger, stats or reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ResumeOutcome = Literal["replayed-complete", "gap-flagged", "silent-gap", "duplicate-replay", "restarted"]
#: How an event reached the phone: pushed while connected, replayed on resume
#: (Last-Event-ID), read back by a refetch or a snapshot after a (re)subscribe,
#: or read by a status poll.
DeliveryPath = Literal["live", "replay", "refetch", "snapshot", "poll"]
#: How a phone's session ended.
SessionOutcome = Literal["terminal", "deadline", "error", "interrupted"]

#: The kinds of a job's last event, and so the statuses of a finished job:
#: a watch ends when one of them arrives.
TERMINAL: frozenset[str] = frozenset({"done", "failed"})


@dataclass(frozen=True, slots=True)
class Submitted:
    """The job exists; the watcher knows its id and read token."""

    job_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Connected:
    """A transport connection (stream, socket, first poll) is up."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event received, exactly as the transport delivered it.

    Watchers report *every* receipt, repeats included, so the ledger can count
    duplicates on the wire; ``shown`` says whether the app displayed it
    (False when the client's own dedupe dropped it), ``path`` how it came.
    """

    job_id: str
    seq: int
    kind: str
    message: str
    shown: bool = True
    path: DeliveryPath = "live"


@dataclass(frozen=True, slots=True)
class Alive:
    """Proof of life without news: a heartbeat, an SSE comment, a 304."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The watcher noticed it lost the transport (error, close, watchdog)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The transport is back after a :class:`Disconnected`."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Resumed:
    """The watcher asked the server to continue after ``from_seq``."""

    from_seq: int


@dataclass(frozen=True, slots=True)
class GapFlagged:
    """The transport told the client it lost continuity after ``after_seq``."""

    after_seq: int


@dataclass(frozen=True, slots=True)
class Resubmitted:
    """The watcher started the job again (the naive SSE client's only recourse)."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Finding:
    """Something about the client or server worth reporting (not an exception)."""

    name: str
    detail: str = ""


ClientEvent = (
    Submitted
    | Connected
    | Progress
    | Alive
    | Disconnected
    | Reconnected
    | Resumed
    | GapFlagged
    | Resubmitted
    | Finding
)

ObservationType = Literal[
    "submitted",
    "connected",
    "progress",
    "alive",
    "disconnected",
    "reconnected",
    "resumed",
    "gap_flagged",
    "resubmitted",
    "finding",
]

_TYPE_NAMES: dict[type, ObservationType] = {
    Submitted: "submitted",
    Connected: "connected",
    Progress: "progress",
    Alive: "alive",
    Disconnected: "disconnected",
    Reconnected: "reconnected",
    Resumed: "resumed",
    GapFlagged: "gap_flagged",
    Resubmitted: "resubmitted",
    Finding: "finding",
}


class Observation(BaseModel):
    """A client event with the times the session driver stamped on it."""

    model_config = ConfigDict(frozen=True)

    type: ObservationType
    wall_ns: int
    mono_ns: int
    job_id: str | None = None
    seq: int | None = None
    kind: str | None = None
    detail: str | None = None
    #: progress only: displayed by the app (False: dropped by the client's dedupe), and how it came
    shown: bool = True
    path: DeliveryPath | None = None

    @classmethod
    def of(cls, event: ClientEvent, wall_ns: int, mono_ns: int) -> Observation:
        fields: dict[str, object] = {}
        match event:
            case Submitted(job_id=job_id) | Resubmitted(job_id=job_id):
                fields["job_id"] = job_id
            case Progress(job_id=job_id, seq=seq, kind=kind, message=message, shown=shown, path=path):
                fields.update(job_id=job_id, seq=seq, kind=kind, detail=message, shown=shown, path=path)
            case Disconnected(reason=reason):
                fields["detail"] = reason
            case Reconnected(attempt=attempt):
                fields["seq"] = attempt
            case Resumed(from_seq=seq) | GapFlagged(after_seq=seq):
                fields["seq"] = seq
            case Finding(name=name, detail=detail):
                fields.update(kind=name, detail=detail)
            case _:
                pass
        fields.update(type=_TYPE_NAMES[type(event)], wall_ns=wall_ns, mono_ns=mono_ns)
        return cls.model_validate(fields)


class FaultWindow(BaseModel):
    """A span during which a fault was applied to this session's network or server."""

    model_config = ConfigDict(frozen=True)

    kind: str
    start_wall_ns: int
    end_wall_ns: int
    #: The phone cell it hit; None for a stack-wide fault (a killed worker).
    cell: int | None = None


class SessionRecord(BaseModel):
    """Everything one simulated phone saw while watching one job.

    This is the raw material of ``sessions.csv`` and ``events.csv``; it is
    kept whole (never just aggregates) so a report can be recomputed.
    """

    session_id: str
    transport: str
    profile: str
    cell: int = 0
    owner: str
    user_index: int
    job_index: int
    job_id: str | None = None
    extra_job_ids: list[str] = Field(default_factory=list)
    started_wall_ns: int
    ended_wall_ns: int
    started_mono_ns: int
    ended_mono_ns: int
    outcome: SessionOutcome
    error: str | None = None
    stall_threshold_s: float
    #: the run's time scale: durations here are compressed by it (real-time equivalent = value / scale)
    time_scale: float = 1.0
    #: the job's planned duration in (compressed) seconds, for time-to-result ratios; None if unknown
    planned_job_s: float | None = None
    #: the watcher reads the job's current state, not its events: steps superseded between two
    #: reads are ``coalesced`` by design, not lost (the watcher's ``coalesces`` attribute)
    coalescing: bool = False
    observations: list[Observation] = Field(default_factory=list)
    fault_windows: list[FaultWindow] = Field(default_factory=list)
