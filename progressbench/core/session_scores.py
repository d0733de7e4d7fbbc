"""Per-session scorers: what the user lived through, from the stamped observations and the store's truth.

Pure functions over values, used by :func:`progressbench.core.ledger.account`.
Each one answers a question a person watching the phone would ask:

* did every reconnect give me back what I missed (:func:`classify_resumes`)?
* did the screen ever go back (:func:`regressions`)?
* how many times did my one request run (:func:`executions`)?
* was I left looking at a frozen screen while work went on (:func:`silent_stall`)?
* how long after the network came back did I see something fresh (:func:`resume_times`)?
* which steps could a state poller never have seen (:func:`coalesced`)?

A progress observation names its job: a naive client that re-POSTs gets a
new job, whose step 1 is not the old job's step 1. Bookkeeping is therefore
by ``(job_id, seq)``; only the *screen* (the highest step shown) is shared
across the jobs of one intent, because that is what the user sees.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from progressbench.core.events import Observation, ResumeOutcome, SessionRecord

#: Observations that tell the user something went wrong (the screen shows an error, not a frozen step).
_ERRORS = frozenset({"disconnected", "gap_flagged", "finding"})
#: Observations after which the client no longer shows the error of a preceding disconnect.
_BACK = frozenset({"reconnected", "connected", "resubmitted"})
#: Observations that prove the client got fresh state after a fault.
_FRESH = frozenset({"progress", "alive"})
#: Observations that are (or come with) an answer from the server.
_ANSWERS = frozenset({"progress", "alive", "connected", "reconnected"})

RESUME_OUTCOMES: tuple[ResumeOutcome, ...] = (
    "replayed-complete",
    "gap-flagged",
    "silent-gap",
    "duplicate-replay",
    "restarted",
)

Key = tuple[str, int]  # (job_id, seq)


@dataclass(frozen=True, slots=True)
class Commit:
    """One committed event of one of the session's jobs."""

    job_id: str
    seq: int
    committed_wall_ns: int


def _ms(ns: int) -> float:
    return ns / 1e6


def _key(o: Observation) -> Key:
    return (o.job_id or "", o.seq or 0)


def coalesced(obs: Sequence[Observation], commits: Iterable[Commit]) -> set[Key]:
    """States a polling client could not see because a later state replaced them between two reads.

    A client that reads a job's *current* state sees a step only if one of
    its reads falls while that step is the latest. A committed event the
    client never received is *coalesced* when a later event of the same job
    replaced it and the client got an answer (any successful read:
    ``progress``, ``alive``, ``connected``, ``reconnected``) at or after that
    replacement: the client kept reading and the state was already gone. An
    event that was still the latest when the client stopped reading (the
    final state it never learned, or steps after it gave up) is not
    coalesced: it is lost.

    Choice: a read's server-side time is not observed, so this does not look
    for a read that returned a step the client then failed to show (a client
    fault, not coalescing); the state watcher shows every new state it reads.
    """
    received = {_key(o) for o in obs if o.type == "progress" and o.seq is not None}
    answers = [o.wall_ns for o in obs if o.type in _ANSWERS]
    last_answer = max(answers, default=None)
    by_job: dict[str, list[Commit]] = {}
    for c in commits:
        by_job.setdefault(c.job_id, []).append(c)
    result: set[Key] = set()
    if last_answer is None:
        return result
    for job_commits in by_job.values():
        ordered = sorted(job_commits, key=lambda c: c.seq)
        for current, later in pairwise(ordered):
            key = (current.job_id, current.seq)
            if key not in received and later.committed_wall_ns <= last_answer:
                result.add(key)
    return result


def classify_resumes(
    obs: Sequence[Observation],
    commits: Iterable[Commit],
    *,
    own_jobs: Iterable[str] | None = None,
    reran: Iterable[str] = (),
    excused: Iterable[Key] = (),
) -> Counter[ResumeOutcome]:
    """Score each reconnect with the taxonomy of reference/peers.md (b), plus ``restarted``.

    For each ``reconnected`` observation, look at the progress events of the
    session's own jobs between it and the next disconnect (its *window*):

    * the client re-submitted the job after the drop, or the window starts
      again at the first step of a job whose work ran again (``reran``)
      -> *restarted*: nothing was replayed, the work began anew;
    * an event the client had already seen before the drop -> *duplicate-replay*;
    * else, every event the store committed after the last one seen before the
      drop, up to the highest one received in the window, arrived ->
      *replayed-complete*;
    * an empty window (the link dropped again before anything arrived) is judged
      by what was *due* in it: events committed before the window closed that
      the client never received by the end of the session. None due, or all of
      them recovered later -> *replayed-complete* (a flapping link that loses
      nothing is not a gap);
    * else, if the transport flagged a gap -> *gap-flagged*; else -> *silent-gap*.

    Foreign events are counted elsewhere and never make a resume look good.
    ``excused`` events (coalesced states a state poller could never see) are
    not due: missing them is no gap.
    """
    excused_keys = set(excused)
    commits = [c for c in commits if (c.job_id, c.seq) not in excused_keys]
    own = {c.job_id for c in commits} if own_jobs is None else set(own_jobs)
    reran_jobs = set(reran)
    first_seq: dict[str, int] = {}
    for c in commits:
        first_seq[c.job_id] = min(c.seq, first_seq.get(c.job_id, c.seq))
    ever = {_key(o) for o in obs if o.type == "progress" and o.job_id in own}
    result: Counter[ResumeOutcome] = Counter()
    seen: set[Key] = set()
    resubmitted_since_drop = False
    i, n = 0, len(obs)
    while i < n:
        o = obs[i]
        if o.type == "progress" and o.seq is not None and o.job_id in own:
            seen.add(_key(o))
        elif o.type == "disconnected":
            resubmitted_since_drop = False
        elif o.type == "resubmitted":
            resubmitted_since_drop = True
        if o.type != "reconnected":
            i += 1
            continue
        before = set(seen)
        last_before = {job: max(s for j, s in before if j == job) for job in {j for j, _ in before}}
        window: list[Key] = []
        flagged = False
        j = i + 1
        while j < n and obs[j].type != "disconnected":
            w = obs[j]
            if w.type == "progress" and w.seq is not None and w.job_id in own:
                if w.shown:  # a repeat the client's dedupe hid is a wire duplicate, not a replay the user saw
                    window.append(_key(w))
                seen.add(_key(w))
            elif w.type == "gap_flagged":
                flagged = True
            elif w.type == "resubmitted" and not window:
                resubmitted_since_drop = True
            j += 1
        close_ns = obs[j].wall_ns if j < n else None
        restarted = resubmitted_since_drop or bool(
            window and window[0][0] in reran_jobs and window[0][1] == first_seq.get(window[0][0])
        )
        if restarted:
            result["restarted"] += 1
        elif any(k in before for k in window):
            result["duplicate-replay"] += 1
        else:
            if window:
                top: dict[str, int] = {}
                for job, s in window:
                    top[job] = max(s, top.get(job, s))
                missing = [
                    c
                    for c in commits
                    if c.job_id in top
                    and last_before.get(c.job_id, 0) < c.seq <= top[c.job_id]
                    and (c.job_id, c.seq) not in seen
                ]
            else:
                missing = [
                    c
                    for c in commits
                    if c.seq > last_before.get(c.job_id, 0)
                    and (close_ns is None or c.committed_wall_ns <= close_ns)
                    and (c.job_id, c.seq) not in ever
                ]
            if not missing:
                result["replayed-complete"] += 1
            elif flagged:
                result["gap-flagged"] += 1
            else:
                result["silent-gap"] += 1
        resubmitted_since_drop = False
        i = j
    return result


def regressions(obs: Sequence[Observation], own_jobs: Iterable[str]) -> int:
    """How many times the screen went back: a step shown lower than the highest already shown.

    A repeat of the same step is a duplicate, not a regression; a new job's
    step 1 after the old job's step 4 is one (the user watched the bar reset).
    """
    own = set(own_jobs)
    shown = 0
    count = 0
    for o in obs:
        if o.type != "progress" or o.seq is None or o.job_id not in own or not o.shown:
            continue
        if o.seq < shown:
            count += 1
        shown = max(shown, o.seq)
    return count


def executions(step_runs: Mapping[str, Mapping[int, int]]) -> int:
    """Executions of the work behind one intent: how often each job's first step ran, summed over its jobs.

    A job resumed from its checkpoint re-runs only the step it was in, which is
    not a new execution; a rerun from the start (a naive re-POST, a rewind)
    runs the first step again, which is. A job none of whose steps ran (stuck
    pending) adds nothing.
    """
    total = 0
    for runs in step_runs.values():
        if runs:
            total += runs[min(runs)]
    return total


@dataclass(frozen=True, slots=True)
class StepRun:
    """One completed run of one step of a job (a ``step_runs`` row), on the store's clock.

    ``started_wall_ns`` is None for rows written before the store recorded it
    (their duration is unknown and counts as 0).
    """

    seq: int
    started_wall_ns: int | None
    finished_wall_ns: int

    @property
    def began_wall_ns(self) -> int:
        return self.finished_wall_ns if self.started_wall_ns is None else self.started_wall_ns

    @property
    def seconds(self) -> float:
        if self.started_wall_ns is None:
            return 0.0
        return max(self.finished_wall_ns - self.started_wall_ns, 0) / 1e9


def split_executions(runs: Iterable[StepRun]) -> list[list[StepRun]]:
    """One job's step runs, in finishing order, cut into executions.

    Same rule as :func:`executions`: a run of the job's first step begins a
    new execution (a rerun from the start); a step repeated mid-job (a resume
    from a checkpoint, a lost lease) stays in the execution it belongs to.
    """
    ordered = sorted(runs, key=lambda r: r.finished_wall_ns)
    if not ordered:
        return []
    first = min(r.seq for r in ordered)
    found: list[list[StepRun]] = []
    for run in ordered:
        if run.seq == first or not found:
            found.append([])
        found[-1].append(run)
    return found


def wasted_work(runs_by_job: Mapping[str, Iterable[StepRun]], kept: tuple[str, int] | None) -> float:
    """Execution seconds of one intent whose output the user never kept (compressed seconds).

    ``kept`` is the job and commit time (wall ns) of the terminal event the
    user received, or None when no result reached the user. The execution that
    committed that terminal is the one whose output was kept: the last
    execution of that job to begin before the terminal was committed. Within
    it, the first completed run of each step is kept and any repeat of the
    same step is waste. Every other execution — superseded by a re-POST that
    reran the job, abandoned when the stream died, or finished after the user
    had gone — is waste, whole. When nothing reached the user, all of it is.

    Only completed step runs are known to the store: the unfinished part of a
    step cut short by a shutdown is not counted (a lower bound).
    """
    wasted = 0.0
    for job_id, runs in runs_by_job.items():
        split = split_executions(runs)
        keep: list[StepRun] = []
        if kept is not None and kept[0] == job_id:
            begun = [e for e in split if min(r.began_wall_ns for r in e) <= kept[1]]
            if begun:
                keep = begun[-1]
        kept_seqs: set[int] = set()
        for execution in split:
            for run in execution:
                if execution is keep and run.seq not in kept_seqs:
                    kept_seqs.add(run.seq)
                    continue
                wasted += run.seconds
    return wasted


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
    record: SessionRecord,
    obs: Sequence[Observation],
    commits: Iterable[Commit],
    *,
    until_ns: int | None = None,
) -> tuple[bool, float]:
    """Was the user left looking at a frozen screen, with no error, while the work went on?

    The screen changes only when a step *higher* than any shown arrives (a
    repeated or lower step — a replay, a rerun from step 1 — tells the user
    nothing new), or when an error is shown. For each event any of the
    session's jobs committed while the user was waiting (from the start until
    the result was shown, ``until_ns``, or the session ended), the silence is
    the time to the next such change. A rerun that commits steps the user
    already saw is work going on with a frozen screen. A long step that
    commits nothing is not: the job itself is quiet. Silences that start while
    the client shows an error (between a disconnect and its reconnect) are not
    silent. Returns the verdict and the longest silence (ms).
    """
    end = record.ended_wall_ns if until_ns is None else min(until_ns, record.ended_wall_ns)
    signals: list[int] = []
    shown = 0
    for o in obs:
        if o.type == "progress" and o.seq is not None and o.shown:
            if o.seq > shown:
                signals.append(o.wall_ns)
            shown = max(shown, o.seq)
        elif o.type in _ERRORS:
            signals.append(o.wall_ns)
    signals.sort()
    down: list[tuple[int, int]] = []
    since: int | None = None
    for o in obs:
        if o.type == "disconnected" and since is None:
            since = o.wall_ns
        elif o.type in _BACK and since is not None:
            down.append((since, o.wall_ns))
            since = None
    if since is not None:
        down.append((since, end))
    longest = 0.0
    for c in commits:
        t = c.committed_wall_ns
        if t < record.started_wall_ns or t >= end:
            continue
        if any(a <= t <= b for a, b in down):
            continue
        nxt = next((s for s in signals if s >= t), end)
        longest = max(longest, _ms(nxt - t))
    return longest > record.stall_threshold_s * 1000.0, longest


def exposed(record: SessionRecord) -> bool:
    """Did a fault window of the session's cell (or the whole stack) overlap the session's lifetime?"""
    return any(
        w.start_wall_ns < record.ended_wall_ns and w.end_wall_ns > record.started_wall_ns
        for w in record.fault_windows
    )
