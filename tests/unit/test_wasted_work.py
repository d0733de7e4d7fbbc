"""Wasted work: execution seconds whose output the user never kept, from ``step_runs`` spans."""

from __future__ import annotations

from progressbench.core.events import Observation, SessionRecord
from progressbench.core.ledger import CommittedEvent, JobTruth, account, summarize
from progressbench.core.session_scores import StepRun, split_executions, wasted_work

MS = 1_000_000  # ns
A, B = "job-a", "job-b"


def run(seq: int, start_ms: float, end_ms: float) -> StepRun:
    return StepRun(seq, int(start_ms * MS), int(end_ms * MS))


def execution(first_ms: float, steps: int = 4, step_ms: float = 100) -> list[StepRun]:
    """``steps`` back-to-back runs from ``first_ms``, each ``step_ms`` long."""
    return [run(s, first_ms + (s - 1) * step_ms, first_ms + s * step_ms) for s in range(1, steps + 1)]


def test_one_execution_whose_result_was_shown_wastes_nothing() -> None:
    assert wasted_work({A: execution(0)}, kept=(A, 410 * MS)) == 0.0


def test_nothing_kept_when_no_result_reached_the_user() -> None:
    """The job finished, the user never saw its terminal: every second of it was for nothing."""
    assert wasted_work({A: execution(0)}, kept=None) == 0.4


def test_a_rewound_job_wastes_the_execution_that_did_not_commit_the_result() -> None:
    """Naive rewind of the same job: execution 1 committed the terminal at 410 ms, execution 2 reran."""
    runs = execution(0) + execution(600)
    assert [len(e) for e in split_executions(runs)] == [4, 4]
    assert round(wasted_work({A: runs}, kept=(A, 410 * MS)), 6) == 0.4


def test_a_new_job_per_repost_wastes_the_abandoned_first_one() -> None:
    """Faithful naive: job-a abandoned after 2 steps, job-b ran whole and its result was shown."""
    runs = {A: execution(0, steps=2), B: execution(600)}
    assert round(wasted_work(runs, kept=(B, 1010 * MS)), 6) == 0.2


def test_a_step_completed_twice_inside_the_kept_execution_wastes_the_repeat() -> None:
    """A lost lease: step 3 ran to completion on two instances; one of them is waste."""
    runs = [*execution(0), run(3, 220, 330)]
    assert round(wasted_work({A: runs}, kept=(A, 500 * MS)), 6) == 0.11


def test_runs_without_a_start_count_as_zero() -> None:
    """Rows from before ``step_runs.started_at`` existed have no known duration."""
    assert wasted_work({A: [StepRun(1, None, 100 * MS)]}, kept=None) == 0.0


def _obs(type_: str, at_ms: float, **kw: object) -> Observation:
    return Observation(type=type_, wall_ns=int(at_ms * MS), mono_ns=int(at_ms * MS), **kw)  # type: ignore[arg-type]


def _prog(seq: int, at_ms: float, job: str, kind: str = "step") -> Observation:
    return _obs("progress", at_ms, job_id=job, seq=seq, kind=kind)


def _truth(job: str, first_ms: float, runs: list[StepRun], steps: int = 4) -> JobTruth:
    events = [CommittedEvent(s, "step", int((first_ms + s * 100) * MS)) for s in range(1, steps + 1)]
    events.append(CommittedEvent(steps + 1, "done", int((first_ms + (steps + 1) * 100) * MS)))
    return JobTruth(job, "done", tuple(events), {r.seq: 1 for r in runs}, runs=tuple(runs))


def _naive_cut_record(k: int) -> SessionRecord:
    """Saw k steps of job-a, the stream died, the re-POST made job-b which it watched to the end."""
    seen = [_obs("submitted", 0, job_id=A)]
    seen += [_prog(s, s * 100 + 5, A) for s in range(1, k + 1)]
    seen += [_obs("disconnected", k * 100 + 50, detail="cut"), _obs("resubmitted", 600, job_id=B)]
    seen += [_prog(s, 600 + s * 100 + 5, B) for s in range(1, 5)] + [_prog(5, 1105, B, "done")]
    return SessionRecord.model_validate(
        dict(
            session_id="s1",
            transport="sse-naive",
            profile="cut",
            owner="u1",
            user_index=0,
            job_index=0,
            job_id=A,
            extra_job_ids=[B],
            started_wall_ns=0,
            ended_wall_ns=1200 * MS,
            started_mono_ns=0,
            ended_mono_ns=1200 * MS,
            outcome="terminal",
            stall_threshold_s=10.0,
            time_scale=0.05,
            observations=seen,
        )
    )


def test_a_naive_cut_after_k_of_n_is_counted_exactly() -> None:
    """Calibration at the ledger: job-a (n = 5 events) ran to its end unobserved after the cut at k = 2.

    lost = n - k for the first execution, two executions, one regression, and the whole of
    job-a's execution (0.4 s compressed = 8 s real at scale 0.05) wasted.
    """
    k, n = 2, 5
    truths = {A: _truth(A, 0, execution(0)), B: _truth(B, 600, execution(600))}
    row, _ = account(_naive_cut_record(k), truths)
    assert row.lost == n - k and row.events_expected == n
    assert row.executions == 2 and row.progress_regressions == 1 and row.terminal_received
    assert row.wasted_work_s_raw == 0.4 and row.wasted_work_s == 8.0
    cell = summarize("sse-naive", "cut", [row, row], [])
    assert cell.wasted_work_s == 16.0
