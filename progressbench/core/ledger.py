"""The session ledger: what a phone saw, compared with what the store committed.

Pure code. Values in (a :class:`~progressbench.core.events.SessionRecord` and the
store's :class:`JobTruth` for the jobs it touched), findings out (a
:class:`SessionRow` for ``sessions.csv`` and :class:`EventRow` s for
``events.csv``); :func:`summarize` folds rows into one ``summary.json`` cell.
No sockets, no clocks: every time comes in with the data.

Definitions are those of ``RESULTS.md``. Where it leaves room, the choices
are written next to the code that makes them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from progressbench.core.events import TERMINAL, SessionRecord
from progressbench.core.session_scores import (
    RESUME_OUTCOMES,
    Commit,
    StepRun,
    classify_resumes,
    coalesced,
    executions,
    exposed,
    regressions,
    resume_times,
    silent_stall,
    wasted_work,
)
from progressbench.core.summary import CellAggregates, Percentiles, Percentiles99, ResumeOutcomes, Spread

__all__ = [
    "RESUME_OUTCOMES",
    "CommittedEvent",
    "EventRow",
    "JobTruth",
    "SessionRow",
    "StepRun",
    "account",
    "summarize",
]

DELIVERY_PATHS = ("live", "replay", "refetch", "snapshot", "poll")
#: What may start an execution of a job (as the executor records it); each is reported, 0 or not.
TRIGGERS = ("dispatch", "queue-retry", "cron", "lease-watchdog")
#: The finding of a job that ran outside its transport's declared execution context (seeds/004).
SILENT_FALLBACK = "silent-fallback"


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    seq: int
    kind: str
    committed_wall_ns: int


@dataclass(frozen=True, slots=True)
class JobTruth:
    """The store's ground truth for one job, read after the session ended."""

    job_id: str
    status: str
    events: tuple[CommittedEvent, ...]
    step_runs: Mapping[int, int] = field(default_factory=dict)  # seq -> times run
    #: Where each execution of the job ran, ``"<service>/<kind>"`` (one entry per attempt).
    contexts: tuple[str, ...] = ()
    #: What started each of those executions (``dispatch``, ``queue-retry``, ``cron``, ``lease-watchdog``).
    triggers: tuple[str, ...] = ()

    def ran_outside(self, declared: str | None) -> bool:
        """An execution ran somewhere its pattern does not put work: a silent fallback."""
        return declared is not None and any(c != declared for c in self.contexts)

    #: The job row's last start and its finish (wall clock ns); None when it never started or finished.
    started_wall_ns: int | None = None
    finished_wall_ns: int | None = None
    #: schema 2: every completed step run with its span (``wasted_work_s``); empty when not read
    runs: tuple[StepRun, ...] = ()

    @property
    def by_seq(self) -> dict[int, CommittedEvent]:
        return {e.seq: e for e in self.events}

    @property
    def ran_twice(self) -> bool:
        return any(n > 1 for n in self.step_runs.values())


@dataclass(frozen=True, slots=True)
class EventRow:
    """One row of ``events.csv``: one event a client received."""

    session_id: str
    transport: str
    profile: str
    job_id: str
    seq: int
    kind: str
    committed_wall_ns: int | None
    received_wall_ns: int
    #: commit -> receive in real-time-equivalent ms (``latency_ms_raw`` / the run's time scale)
    latency_ms: float | None
    duplicate: bool
    out_of_order: bool
    foreign: bool
    #: schema 2: the app displayed it (False: dropped by the client's dedupe); how it came
    shown: bool = True
    path: str = ""
    #: schema 2: the latency as measured in the compressed run (ms)
    latency_ms_raw: float | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One row of ``sessions.csv``: one phone watching one job."""

    session_id: str
    transport: str
    profile: str
    cell: int
    owner: str
    user_index: int
    job_index: int
    job_id: str
    job_status: str
    outcome: str
    error: str
    duration_ms: float
    first_event_ms: float | None
    events_expected: int
    events_received: int
    lost: int
    duplicates: int
    out_of_order: int
    terminal_received: bool
    terminal_latency_ms: float | None
    disconnects: int
    reconnects: int
    resumes: int
    resume_ms: tuple[float, ...]
    resume_replayed_complete: int
    resume_gap_flagged: int
    resume_silent_gap: int
    resume_duplicate_replay: int
    silent_stall: bool
    longest_silence_ms: float
    foreign_events: int
    duplicate_execution: bool
    fault_windows: int
    findings: str
    # schema 2 (RESULTS.md "Additions"): what the user lived through
    resume_restarted: int = 0
    duplicates_wire: int = 0
    duplicates_shown: int = 0
    executions: int = 0
    progress_regressions: int = 0
    time_to_result_s: float | None = None
    time_to_result_ratio: float | None = None
    exposed: bool = False
    path_live: int = 0
    path_replay: int = 0
    path_refetch: int = 0
    path_snapshot: int = 0
    path_poll: int = 0
    #: Executions of the session's jobs by where they ran, ``"worker/request=1;api/request=1"``.
    contexts: str = ""
    #: The session's jobs that ran outside their transport's declared context.
    silent_fallbacks: int = 0
    #: The same executions by what started them, ``"dispatch=1;cron=1"``.
    triggers: str = ""
    #: schema 2: the durations above are real-time-equivalent (measured / time scale); these are
    #: the values as measured in the compressed run
    duration_ms_raw: float = 0.0
    first_event_ms_raw: float | None = None
    terminal_latency_ms_raw: float | None = None
    resume_ms_raw: tuple[float, ...] = ()
    longest_silence_ms_raw: float = 0.0
    #: Execution seconds whose output the user never kept, real-time-equivalent (``_raw``: compressed).
    wasted_work_s: float = 0.0
    wasted_work_s_raw: float = 0.0
    coalesced: int = 0

    def as_csv(self) -> dict[str, object]:
        row = asdict(self)
        row["resume_ms"] = ";".join(f"{v:.1f}" for v in self.resume_ms)
        row["resume_ms_raw"] = ";".join(f"{v:.1f}" for v in self.resume_ms_raw)
        return row


def _ms(ns: int) -> float:
    return ns / 1e6


def real(ms: float | None, time_scale: float) -> float | None:
    """A duration measured in a run compressed by ``time_scale``, in real-time-equivalent units."""
    return None if ms is None else round(ms / time_scale, 3)


def _path(reported: str | None, commit: CommittedEvent | None, connection_start_ns: int) -> str:
    """How the event came: as the watcher says, except that a "live" event committed before its
    connection stood was read from the store's history on (re)connect — a replay (``Last-Event-ID``)."""
    path = reported or "live"
    if path == "live" and commit is not None and commit.committed_wall_ns < connection_start_ns:
        return "replay"
    return path


def account(
    record: SessionRecord, truths: Mapping[str, JobTruth], declared_context: str | None = None
) -> tuple[SessionRow, list[EventRow]]:
    """Score one session against the store. ``truths`` maps job id -> truth.

    ``declared_context`` is where the session's transport means its work to
    run (``"<service>/<kind>"``; None: not judged): each of its jobs with an
    execution elsewhere is a ``silent-fallback`` finding.

    Delivery is scored against the *primary* job (the one the user asked for
    first): events of a second job the client made by re-submitting are not
    deliveries of the first one. The intent-level measures (executions,
    regressions, time to result, stalls) look at every job of the session,
    because the user saw them all as one request.
    """
    own_ids = [i for i in dict.fromkeys([record.job_id, *record.extra_job_ids]) if i]
    own = set(own_ids)
    primary = truths.get(record.job_id or "")
    committed = primary.by_seq if primary else {}
    cutoff = record.ended_wall_ns if record.outcome == "interrupted" else None
    if cutoff is not None:
        # The run stopped this phone: what its job did afterwards was never due to it.
        committed = {s: e for s, e in committed.items() if e.committed_wall_ns <= cutoff}
    commits = [
        Commit(i, e.seq, e.committed_wall_ns)
        for i in own_ids
        if i in truths
        for e in truths[i].events
        if cutoff is None or e.committed_wall_ns <= cutoff
    ]
    obs = sorted(record.observations, key=lambda o: o.mono_ns)

    events: list[EventRow] = []
    seen: set[tuple[str, int]] = set()
    max_seq: dict[str, int] = {}
    dup_wire = dup_shown = out_of_order = foreign = 0
    paths: Counter[str] = Counter()
    terminal_latency: float | None = None
    terminal_wall: int | None = None
    terminal_mono: int | None = None
    kept: tuple[str, int] | None = None
    first_event_ms: float | None = None
    connection_start = record.started_wall_ns
    # durations are measured in the compressed run and reported over its scale (real-time equivalent)
    scale = record.time_scale or 1.0
    for o in obs:
        if o.type in ("connected", "reconnected"):
            connection_start = o.wall_ns
        if o.type != "progress" or o.seq is None:
            continue
        job = o.job_id or ""
        is_foreign = job not in own
        truth = truths.get(job)
        commit = truth.by_seq.get(o.seq) if truth else None
        duplicate = ooo = False
        if is_foreign:
            foreign += 1
        elif (job, o.seq) in seen:
            duplicate = True
            dup_wire += 1
            dup_shown += o.shown
        else:
            seen.add((job, o.seq))
            paths[_path(o.path, commit, connection_start)] += 1
            if o.seq < max_seq.get(job, 0):
                ooo = True
                out_of_order += 1
            max_seq[job] = max(max_seq.get(job, 0), o.seq)
            if first_event_ms is None:
                first_event_ms = _ms(o.mono_ns - record.started_mono_ns)
            if (o.kind or "") in TERMINAL and terminal_wall is None:
                terminal_wall, terminal_mono = o.wall_ns, o.mono_ns
                if commit is not None:
                    terminal_latency = _ms(o.wall_ns - commit.committed_wall_ns)
                    kept = (job, commit.committed_wall_ns)
        latency = _ms(o.wall_ns - commit.committed_wall_ns) if commit is not None and not is_foreign else None
        events.append(
            EventRow(
                session_id=record.session_id,
                transport=record.transport,
                profile=record.profile,
                job_id=job,
                seq=o.seq,
                kind=o.kind or "",
                committed_wall_ns=commit.committed_wall_ns if commit else None,
                received_wall_ns=o.wall_ns,
                latency_ms=real(latency, scale),
                duplicate=duplicate,
                out_of_order=ooo,
                foreign=is_foreign,
                shown=o.shown,
                path=_path(o.path, commit, connection_start),
                latency_ms_raw=latency,
            )
        )

    primary_id = record.job_id or ""
    received = len({seq for job, seq in seen if job == primary_id} & set(committed))
    expected = len(committed)
    # A state poller never sees a step replaced between two reads: by design, not lost.
    merged = coalesced(obs, commits) if record.coalescing else set()
    n_coalesced = len({seq for job, seq in merged if job == primary_id} & set(committed))
    counts = Counter(o.type for o in obs)
    runs = {i: truths[i].step_runs for i in own_ids if i in truths}
    reran = [i for i, r in runs.items() if r and r[min(r)] > 1]
    outcomes = classify_resumes(obs, commits, own_jobs=own, reran=reran, excused=merged)
    stall, longest = silent_stall(record, obs, commits, until_ns=terminal_wall)
    resume = resume_times(record, obs)
    n_exec = executions(runs)
    dup_exec = bool(primary and primary.ran_twice) or n_exec > 1
    places = Counter(c for i in own_ids if i in truths for c in truths[i].contexts)
    starts = Counter(t for i in own_ids if i in truths for t in truths[i].triggers)
    fallbacks = sum(truths[i].ran_outside(declared_context) for i in own_ids if i in truths)
    findings = sorted(
        {f"{o.kind}" for o in obs if o.type == "finding" and o.kind}
        | ({SILENT_FALLBACK} if fallbacks else set())
    )
    duration_ms = _ms(record.ended_mono_ns - record.started_mono_ns)
    wasted_raw = wasted_work({i: truths[i].runs for i in own_ids if i in truths}, kept)
    to_result = None if terminal_mono is None else (terminal_mono - record.started_mono_ns) / 1e9 / scale
    ratio = (
        None if to_result is None or not record.planned_job_s else to_result / (record.planned_job_s / scale)
    )
    row = SessionRow(
        session_id=record.session_id,
        transport=record.transport,
        profile=record.profile,
        cell=record.cell,
        owner=record.owner,
        user_index=record.user_index,
        job_index=record.job_index,
        job_id=primary_id,
        job_status=primary.status if primary else "unknown",
        outcome=record.outcome,
        error=record.error or "",
        duration_ms=real(duration_ms, scale) or 0.0,
        first_event_ms=real(first_event_ms, scale),
        events_expected=expected,
        events_received=received,
        lost=expected - received - n_coalesced,
        duplicates=dup_shown,
        out_of_order=out_of_order,
        terminal_received=terminal_wall is not None,
        terminal_latency_ms=real(terminal_latency, scale),
        disconnects=counts["disconnected"],
        reconnects=counts["reconnected"],
        resumes=sum(outcomes.values()),
        resume_ms=tuple(round(r / scale, 3) for r in resume),
        resume_replayed_complete=outcomes["replayed-complete"],
        resume_gap_flagged=outcomes["gap-flagged"],
        resume_silent_gap=outcomes["silent-gap"],
        resume_duplicate_replay=outcomes["duplicate-replay"],
        silent_stall=stall,
        longest_silence_ms=real(longest, scale) or 0.0,
        foreign_events=foreign,
        duplicate_execution=dup_exec,
        fault_windows=len(record.fault_windows),
        findings=";".join(findings),
        resume_restarted=outcomes["restarted"],
        duplicates_wire=dup_wire,
        duplicates_shown=dup_shown,
        executions=n_exec,
        progress_regressions=regressions(obs, own),
        time_to_result_s=None if to_result is None else round(to_result, 3),
        time_to_result_ratio=None if ratio is None else round(ratio, 3),
        exposed=exposed(record),
        path_live=paths["live"],
        path_replay=paths["replay"],
        path_refetch=paths["refetch"],
        path_snapshot=paths["snapshot"],
        path_poll=paths["poll"],
        contexts=";".join(f"{c}={n}" for c, n in sorted(places.items())),
        silent_fallbacks=fallbacks,
        triggers=";".join(f"{t}={n}" for t, n in sorted(starts.items())),
        duration_ms_raw=duration_ms,
        first_event_ms_raw=first_event_ms,
        terminal_latency_ms_raw=terminal_latency,
        resume_ms_raw=tuple(resume),
        longest_silence_ms_raw=longest,
        wasted_work_s=round(wasted_raw / scale, 3),
        wasted_work_s_raw=round(wasted_raw, 3),
        coalesced=n_coalesced,
    )
    return row, events


# --------------------------------------------------------------------------- cells


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no data."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _pcts(values: Sequence[float], qs: Iterable[int]) -> dict[str, float | None]:
    return {f"p{q}": _round(percentile(values, q)) for q in qs}


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def summarize(
    transport: str,
    profile: str,
    sessions: Sequence[SessionRow],
    events: Sequence[EventRow],
    *,
    meters: Mapping[str, float] | None = None,
    cost_usd_per_1k_jobs: float | None = None,
    with_exposed: bool = True,
) -> CellAggregates:
    """Fold one cell's rows into the aggregates of a ``summary.json`` cell (RESULTS.md).

    ``exposed`` holds the same aggregates over the sessions a fault window
    overlapped: the cell's verdict, since an unfaulted session says nothing
    about the fault. Costs and meters are the cell's, not split.
    """
    n = len(sessions)
    expected = sum(s.events_expected for s in sessions)
    received = sum(s.events_received for s in sessions)
    latencies = [e.latency_ms for e in events if e.latency_ms is not None and not e.duplicate]
    terminal = [s.terminal_latency_ms for s in sessions if s.terminal_latency_ms is not None]
    resumes = [v for s in sessions for v in s.resume_ms]
    to_result = [s.time_to_result_s for s in sessions if s.time_to_result_s is not None]
    to_result_ratio = [s.time_to_result_ratio for s in sessions if s.time_to_result_ratio is not None]
    with_job = [s for s in sessions if s.job_id]
    return CellAggregates(
        transport=transport,
        profile=profile,
        sessions=n,
        jobs=len({s.job_id for s in sessions if s.job_id}),
        events_expected=expected,
        events_received=received,
        delivery_ratio=_round(received / expected, 6) if expected else None,
        lost=sum(s.lost for s in sessions),
        duplicates=sum(s.duplicates for s in sessions),
        out_of_order=sum(s.out_of_order for s in sessions),
        terminal_ratio=_round(sum(s.terminal_received for s in sessions) / n, 6) if n else None,
        latency_ms=Percentiles99(**_pcts(latencies, (50, 95, 99))),
        terminal_latency_ms=Percentiles(**_pcts(terminal, (50, 95))),
        disconnects=sum(s.disconnects for s in sessions),
        reconnects=sum(s.reconnects for s in sessions),
        resumes=sum(s.resumes for s in sessions),
        resume_ms=Percentiles(**_pcts(resumes, (50, 95))),
        resume_outcomes=ResumeOutcomes(
            replayed_complete=sum(s.resume_replayed_complete for s in sessions),
            gap_flagged=sum(s.resume_gap_flagged for s in sessions),
            silent_gap=sum(s.resume_silent_gap for s in sessions),
            duplicate_replay=sum(s.resume_duplicate_replay for s in sessions),
            restarted=sum(s.resume_restarted for s in sessions),
        ),
        silent_stalls=sum(s.silent_stall for s in sessions),
        foreign_events=sum(s.foreign_events for s in sessions),
        duplicate_executions=sum(s.duplicate_execution for s in sessions),
        stuck_jobs=sum(s.job_status in ("pending", "running", "interrupted") for s in sessions),
        session_outcomes=dict(Counter(s.outcome for s in sessions)),
        findings=dict(Counter(f for s in sessions for f in s.findings.split(";") if f)),
        cost_usd_per_1k_jobs=_round(cost_usd_per_1k_jobs, 6),
        meters=dict(meters or {}),
        exposed_sessions=sum(s.exposed for s in sessions),
        unexposed_sessions=sum(not s.exposed for s in sessions),
        exposed=_exposed(transport, profile, sessions, events) if with_exposed else None,
        executions_per_intent=Spread(
            mean=_round(sum(s.executions for s in sessions) / n) if n else None,
            max=max((s.executions for s in sessions), default=None),
        ),
        progress_regressions=sum(s.progress_regressions > 0 for s in sessions),
        time_to_result_s=Percentiles(**_pcts(to_result, (50, 95))),
        time_to_result_ratio=Percentiles(**_pcts(to_result_ratio, (50, 95))),
        duplicates_wire=sum(s.duplicates_wire for s in sessions),
        duplicates_shown=sum(s.duplicates_shown for s in sessions),
        delivery_paths={path: sum(getattr(s, f"path_{path}") for s in sessions) for path in DELIVERY_PATHS},
        executions_by_context=_tally(s.contexts for s in sessions),
        executions_by_trigger={t: 0 for t in TRIGGERS} | _tally(s.triggers for s in sessions),
        silent_fallbacks=sum(s.silent_fallbacks for s in sessions),
        wasted_work_s=_round(sum(s.wasted_work_s for s in sessions)),
        coalesced=sum(s.coalesced for s in sessions),
        gave_up_at_submit=sum(not s.job_id for s in sessions if s.outcome == "error"),
        job_terminal_ratio=_round(sum(s.terminal_received for s in with_job) / len(with_job), 6)
        if with_job
        else None,
    )


def _tally(cells: Iterable[str]) -> dict[str, int]:
    """Sum ``"a=1;b=2"`` columns over sessions."""
    counts: Counter[str] = Counter()
    for cell in cells:
        for part in filter(None, cell.split(";")):
            place, _, n = part.rpartition("=")
            counts[place] += int(n)
    return dict(sorted(counts.items()))


def _exposed(
    transport: str, profile: str, sessions: Sequence[SessionRow], events: Sequence[EventRow]
) -> CellAggregates:
    ids = {s.session_id for s in sessions if s.exposed}
    return summarize(
        transport,
        profile,
        [s for s in sessions if s.session_id in ids],
        [e for e in events if e.session_id in ids],
        with_exposed=False,
    )
