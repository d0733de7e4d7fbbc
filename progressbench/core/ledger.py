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

from progressbench.core.events import TERMINAL, Observation, ResumeOutcome, SessionRecord

#: Observations that tell the user something: news or an error. A session
#: that gets neither for longer than its stall threshold while its job
#: commits events is silently stalled.
_SIGNALS = frozenset({"progress", "disconnected", "gap_flagged", "finding"})
#: Observations that prove the client got fresh state after a fault.
_FRESH = frozenset({"progress", "alive"})

RESUME_OUTCOMES: tuple[ResumeOutcome, ...] = (
    "replayed-complete",
    "gap-flagged",
    "silent-gap",
    "duplicate-replay",
)


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
    latency_ms: float | None
    duplicate: bool
    out_of_order: bool
    foreign: bool


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

    def as_csv(self) -> dict[str, object]:
        row = asdict(self)
        row["resume_ms"] = ";".join(f"{v:.1f}" for v in self.resume_ms)
        return row


def _ms(ns: int) -> float:
    return ns / 1e6


def account(record: SessionRecord, truths: Mapping[str, JobTruth]) -> tuple[SessionRow, list[EventRow]]:
    """Score one session against the store. ``truths`` maps job id -> truth."""
    own_ids = {i for i in [record.job_id, *record.extra_job_ids] if i}
    primary = truths.get(record.job_id or "")
    committed = primary.by_seq if primary else {}
    if record.outcome == "interrupted":
        # The run stopped this phone: what its job did afterwards was never due to it.
        committed = {s: e for s, e in committed.items() if e.committed_wall_ns <= record.ended_wall_ns}
    obs = sorted(record.observations, key=lambda o: o.mono_ns)

    events: list[EventRow] = []
    seen: set[int] = set()
    max_seq = 0
    duplicates = out_of_order = foreign = 0
    terminal_latency: float | None = None
    terminal_received = False
    first_event_ms: float | None = None
    for o in obs:
        if o.type != "progress" or o.seq is None:
            continue
        is_foreign = o.job_id not in own_ids
        truth = truths.get(o.job_id or "")
        commit = truth.by_seq.get(o.seq) if truth else None
        duplicate = ooo = False
        if is_foreign:
            foreign += 1
        elif o.seq in seen:
            duplicate = True
            duplicates += 1
        else:
            seen.add(o.seq)
            if o.seq < max_seq:
                ooo = True
                out_of_order += 1
            max_seq = max(max_seq, o.seq)
            if first_event_ms is None:
                first_event_ms = _ms(o.mono_ns - record.started_mono_ns)
            if (o.kind or "") in TERMINAL:
                terminal_received = True
                if commit is not None:
                    terminal_latency = _ms(o.wall_ns - commit.committed_wall_ns)
        latency = _ms(o.wall_ns - commit.committed_wall_ns) if commit is not None and not is_foreign else None
        events.append(
            EventRow(
                session_id=record.session_id,
                transport=record.transport,
                profile=record.profile,
                job_id=o.job_id or "",
                seq=o.seq,
                kind=o.kind or "",
                committed_wall_ns=commit.committed_wall_ns if commit else None,
                received_wall_ns=o.wall_ns,
                latency_ms=latency,
                duplicate=duplicate,
                out_of_order=ooo,
                foreign=is_foreign,
            )
        )

    # Events of the primary job received under another of the session's ids
    # (a naive re-POST that made a new job) do not count as delivered.
    received = len(seen & set(committed))
    expected = len(committed)
    counts = Counter(o.type for o in obs)
    outcomes = classify_resumes(obs, committed)
    stall, longest = silent_stall(record, obs, primary)
    resume = resume_times(record, obs)
    dup_exec = bool(primary and primary.ran_twice) or any(
        sum(t.step_runs.values()) > 0 for i, t in truths.items() if i in own_ids and i != record.job_id
    )
    findings = sorted({f"{o.kind}" for o in obs if o.type == "finding" and o.kind})
    row = SessionRow(
        session_id=record.session_id,
        transport=record.transport,
        profile=record.profile,
        cell=record.cell,
        owner=record.owner,
        user_index=record.user_index,
        job_index=record.job_index,
        job_id=record.job_id or "",
        job_status=primary.status if primary else "unknown",
        outcome=record.outcome,
        error=record.error or "",
        duration_ms=_ms(record.ended_mono_ns - record.started_mono_ns),
        first_event_ms=first_event_ms,
        events_expected=expected,
        events_received=received,
        lost=expected - received,
        duplicates=duplicates,
        out_of_order=out_of_order,
        terminal_received=terminal_received,
        terminal_latency_ms=terminal_latency,
        disconnects=counts["disconnected"],
        reconnects=counts["reconnected"],
        resumes=counts["resumed"],
        resume_ms=tuple(resume),
        resume_replayed_complete=outcomes["replayed-complete"],
        resume_gap_flagged=outcomes["gap-flagged"],
        resume_silent_gap=outcomes["silent-gap"],
        resume_duplicate_replay=outcomes["duplicate-replay"],
        silent_stall=stall,
        longest_silence_ms=longest,
        foreign_events=foreign,
        duplicate_execution=dup_exec,
        fault_windows=len(record.fault_windows),
        findings=";".join(findings),
    )
    return row, events


def classify_resumes(obs: Sequence[Observation], committed: Mapping[int, object]) -> Counter[ResumeOutcome]:
    """Score each reconnect with the taxonomy of reference/peers.md (b).

    For each ``reconnected`` observation, look at the progress events the
    client got between it and the next disconnect (or the end):

    * an event the client had already seen before the drop -> *duplicate-replay*
      (it was replayed from too early), whatever else happened;
    * else, every committed seq above the last one seen before the drop that
      the store holds, up to the highest seq received in the window, arrived
      -> *replayed-complete*;
    * else, if the transport flagged a gap -> *gap-flagged*;
    * else -> *silent-gap*.

    Only the primary job's events are considered; foreign events are counted
    elsewhere and never make a resume look good.
    """
    result: Counter[ResumeOutcome] = Counter()
    seen: set[int] = set()
    i = 0
    n = len(obs)
    while i < n:
        o = obs[i]
        if o.type == "progress" and o.seq is not None:
            seen.add(o.seq)
        if o.type != "reconnected":
            i += 1
            continue
        before = set(seen)
        last_before = max(before, default=0)
        window: list[int] = []
        flagged = False
        j = i + 1
        while j < n and obs[j].type != "disconnected":
            w = obs[j]
            if w.type == "progress" and w.seq is not None:
                window.append(w.seq)
                seen.add(w.seq)
            elif w.type == "gap_flagged":
                flagged = True
            j += 1
        if any(s in before for s in window):
            result["duplicate-replay"] += 1
        else:
            top = max(window, default=last_before)
            missing = [s for s in committed if last_before < s <= top and s not in seen]
            if not missing and window:
                result["replayed-complete"] += 1
            elif not window and not any(last_before < s for s in committed):
                result["replayed-complete"] += 1  # nothing was missed, nothing was due
            elif flagged:
                result["gap-flagged"] += 1
            else:
                result["silent-gap"] += 1
        i = j
    return result


def resume_times(record: SessionRecord, obs: Sequence[Observation]) -> list[float]:
    """Network back (end of each fault window) -> first fresh event or state, in ms.

    A window whose network never came back during the session, or after which
    nothing fresh arrived, contributes no sample (it shows as loss or stall).
    """
    samples: list[float] = []
    for window in record.fault_windows:
        if window.end_wall_ns > record.ended_wall_ns:
            continue
        after = [o.wall_ns for o in obs if o.type in _FRESH and o.wall_ns >= window.end_wall_ns]
        if after:
            samples.append(_ms(min(after) - window.end_wall_ns))
    return samples


def silent_stall(
    record: SessionRecord, obs: Sequence[Observation], truth: JobTruth | None
) -> tuple[bool, float]:
    """Did the job make progress the user heard nothing about for too long?

    For each event the store committed while the session was open, find the
    first signal (an event or an error) the client got at or after the commit.
    If that is longer than the session's stall threshold away, the session
    stalled silently. Returns the verdict and the longest such silence (ms).
    """
    if truth is None:
        return False, 0.0
    signals = sorted(o.wall_ns for o in obs if o.type in _SIGNALS)
    end = record.ended_wall_ns
    # While the client shows an error (after a disconnect, before the
    # reconnect) its silence is not silent: the user was told.
    down: list[tuple[int, int]] = []
    since: int | None = None
    for o in obs:
        if o.type == "disconnected" and since is None:
            since = o.wall_ns
        elif o.type == "reconnected" and since is not None:
            down.append((since, o.wall_ns))
            since = None
    if since is not None:
        down.append((since, end))
    longest = 0.0
    for event in truth.events:
        c = event.committed_wall_ns
        if c < record.started_wall_ns or c >= end:
            continue
        if any(a <= c <= b for a, b in down):
            continue
        nxt = next((s for s in signals if s >= c), end)
        longest = max(longest, _ms(nxt - c))
    return longest > record.stall_threshold_s * 1000.0, longest


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
) -> dict[str, object]:
    """Fold one cell's rows into the ``summary.json`` cell of RESULTS.md."""
    n = len(sessions)
    expected = sum(s.events_expected for s in sessions)
    received = sum(s.events_received for s in sessions)
    latencies = [e.latency_ms for e in events if e.latency_ms is not None and not e.duplicate]
    terminal = [s.terminal_latency_ms for s in sessions if s.terminal_latency_ms is not None]
    resumes = [v for s in sessions for v in s.resume_ms]
    return {
        "transport": transport,
        "profile": profile,
        "sessions": n,
        "jobs": len({s.job_id for s in sessions if s.job_id}),
        "events_expected": expected,
        "events_received": received,
        "delivery_ratio": _round(received / expected, 6) if expected else None,
        "lost": sum(s.lost for s in sessions),
        "duplicates": sum(s.duplicates for s in sessions),
        "out_of_order": sum(s.out_of_order for s in sessions),
        "terminal_ratio": _round(sum(s.terminal_received for s in sessions) / n, 6) if n else None,
        "latency_ms": _pcts(latencies, (50, 95, 99)),
        "terminal_latency_ms": _pcts(terminal, (50, 95)),
        "disconnects": sum(s.disconnects for s in sessions),
        "reconnects": sum(s.reconnects for s in sessions),
        "resumes": sum(s.resumes for s in sessions),
        "resume_ms": _pcts(resumes, (50, 95)),
        "resume_outcomes": {
            "replayed-complete": sum(s.resume_replayed_complete for s in sessions),
            "gap-flagged": sum(s.resume_gap_flagged for s in sessions),
            "silent-gap": sum(s.resume_silent_gap for s in sessions),
            "duplicate-replay": sum(s.resume_duplicate_replay for s in sessions),
        },
        "silent_stalls": sum(s.silent_stall for s in sessions),
        "foreign_events": sum(s.foreign_events for s in sessions),
        "duplicate_executions": sum(s.duplicate_execution for s in sessions),
        "stuck_jobs": sum(s.job_status in ("pending", "running", "interrupted") for s in sessions),
        "session_outcomes": dict(Counter(s.outcome for s in sessions)),
        # what the clients reported about themselves (e.g. "no-auth", "client-gave-up"): sessions each
        "findings": dict(Counter(f for s in sessions for f in s.findings.split(";") if f)),
        "cost_usd_per_1k_jobs": _round(cost_usd_per_1k_jobs, 6),
        "meters": dict(meters or {}),
    }
