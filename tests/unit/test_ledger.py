"""The ledger scores what a phone saw against the store, without sockets."""

from __future__ import annotations

from progressbench.core.events import FaultWindow, Observation, SessionRecord
from progressbench.core.ledger import CommittedEvent, JobTruth, account, classify_resumes, summarize

JOB = "job-a"
MS = 1_000_000  # ns


def truth(n_steps: int = 4, kind: str = "done", runs: dict[int, int] | None = None) -> JobTruth:
    events = [CommittedEvent(s, "step", s * 100 * MS) for s in range(1, n_steps + 1)]
    events.append(CommittedEvent(n_steps + 1, kind, (n_steps + 1) * 100 * MS))
    return JobTruth(JOB, kind, tuple(events), runs or {s: 1 for s in range(1, n_steps + 1)})


def prog(seq: int, at_ms: float, kind: str = "step", job: str = JOB) -> Observation:
    return Observation(
        type="progress", wall_ns=int(at_ms * MS), mono_ns=int(at_ms * MS), job_id=job, seq=seq, kind=kind
    )


def obs(kind: str, at_ms: float, **kw: object) -> Observation:
    return Observation(type=kind, wall_ns=int(at_ms * MS), mono_ns=int(at_ms * MS), **kw)  # type: ignore[arg-type]


def record(observations: list[Observation], end_ms: float = 1000, **kw: object) -> SessionRecord:
    base: dict[str, object] = dict(
        session_id="s1",
        transport="polling",
        profile="clean",
        owner="u1",
        user_index=0,
        job_index=0,
        job_id=JOB,
        started_wall_ns=0,
        ended_wall_ns=int(end_ms * MS),
        started_mono_ns=0,
        ended_mono_ns=int(end_ms * MS),
        outcome="terminal",
        stall_threshold_s=0.25,
        observations=[obs("submitted", 0, job_id=JOB), *observations],
    )
    base.update(kw)
    return SessionRecord.model_validate(base)


def in_order(n_steps: int = 4, delay_ms: float = 5) -> list[Observation]:
    out = [prog(s, s * 100 + delay_ms) for s in range(1, n_steps + 1)]
    out.append(prog(n_steps + 1, (n_steps + 1) * 100 + delay_ms, "done"))
    return out


def test_clean_session_delivers_everything_once() -> None:
    """Every committed event received once, in order: no loss, no duplicates, terminal seen."""
    row, events = account(record(in_order()), {JOB: truth()})
    assert (row.events_expected, row.events_received, row.lost) == (5, 5, 0)
    assert (row.duplicates, row.out_of_order, row.foreign_events) == (0, 0, 0)
    assert row.terminal_received and not row.silent_stall
    assert [round(e.latency_ms or 0, 3) for e in events] == [5.0] * 5
    assert row.terminal_latency_ms == 5.0


def test_duplicates_are_counted_and_flagged_not_delivered_twice() -> None:
    """A seq shown twice counts one duplicate; delivery counts it once."""
    seen = in_order()
    seen.insert(2, prog(2, 250))
    row, events = account(record(seen), {JOB: truth()})
    assert row.duplicates == 1 and row.events_received == 5
    assert [e.duplicate for e in events].count(True) == 1


def test_gap_is_loss() -> None:
    """Events never received are lost, even if the terminal event arrived."""
    seen = [o for o in in_order() if o.seq not in (2, 3)]
    row, _ = account(record(seen), {JOB: truth()})
    assert row.lost == 2 and row.events_received == 3 and row.terminal_received


def test_reordering_is_counted() -> None:
    """A lower seq after a higher one is out of order (and not a duplicate)."""
    seen = in_order()
    seen[1], seen[2] = prog(3, 205), prog(2, 305)
    row, events = account(record(seen), {JOB: truth()})
    assert row.out_of_order == 1 and row.duplicates == 0 and row.lost == 0
    assert [e.seq for e in events if e.out_of_order] == [2]


def test_missing_terminal_event() -> None:
    """Without the done event the session did not learn the final state."""
    row, _ = account(record(in_order()[:-1], outcome="deadline"), {JOB: truth()})
    assert not row.terminal_received and row.lost == 1 and row.terminal_latency_ms is None


def test_foreign_events_are_counted_and_never_delivered() -> None:
    """An event of someone else's job is foreign, whatever its seq."""
    seen = in_order()
    seen.insert(1, prog(2, 150, job="job-b"))
    other = JobTruth("job-b", "done", (CommittedEvent(2, "step", 140 * MS),), {})
    row, events = account(record(seen), {JOB: truth(), "job-b": other})
    assert row.foreign_events == 1 and row.events_received == 5
    assert [e.foreign for e in events].count(True) == 1


def test_silent_stall_when_job_progresses_and_client_hears_nothing() -> None:
    """Commits with no event or error for longer than the threshold mark a silent stall."""
    seen = [prog(1, 105)]  # then nothing until the session ends at 1000 ms
    row, _ = account(record(seen, outcome="deadline"), {JOB: truth()})
    assert row.silent_stall and row.longest_silence_ms > 250


def test_an_error_is_not_a_silent_stall() -> None:
    """A client that reports its disconnect is not silent, even if it learns nothing more."""
    seen = [prog(1, 105), obs("disconnected", 150, detail="reset")]
    row, _ = account(record(seen, end_ms=480, outcome="deadline"), {JOB: truth()})
    assert not row.silent_stall


def test_duplicate_execution_from_step_runs() -> None:
    """A step whose work ran twice makes the session's job a duplicate execution."""
    row, _ = account(record(in_order()), {JOB: truth(runs={1: 1, 2: 2, 3: 1, 4: 1})})
    assert row.duplicate_execution


def test_resume_replayed_complete() -> None:
    """After a reconnect the missed events arrive: replayed complete."""
    seen = [
        prog(1, 105),
        obs("disconnected", 150),
        obs("reconnected", 350),
        obs("resumed", 351, seq=1),
        prog(2, 352),
        prog(3, 353),
        prog(4, 405),
        prog(5, 505, "done"),
    ]
    assert classify_resumes(seen, truth().by_seq) == {"replayed-complete": 1}


def test_resume_silent_gap() -> None:
    """After a reconnect the client only gets new events: a silent gap."""
    seen = [
        prog(1, 105),
        obs("disconnected", 150),
        obs("reconnected", 350),
        prog(4, 405),
        prog(5, 505, "done"),
    ]
    assert classify_resumes(seen, truth().by_seq) == {"silent-gap": 1}


def test_resume_gap_flagged() -> None:
    """Loss the transport admits to is gap-flagged, not silent."""
    seen = [
        prog(1, 105),
        obs("disconnected", 150),
        obs("reconnected", 350),
        obs("gap_flagged", 351, seq=1),
        prog(4, 405),
    ]
    assert classify_resumes(seen, truth().by_seq) == {"gap-flagged": 1}


def test_resume_duplicate_replay() -> None:
    """Replaying from too early shows the user events again."""
    seen = [
        prog(1, 105),
        prog(2, 205),
        obs("disconnected", 250),
        obs("reconnected", 350),
        prog(1, 351),
        prog(2, 352),
        prog(3, 353),
    ]
    assert classify_resumes(seen, truth().by_seq) == {"duplicate-replay": 1}


def test_resume_ms_from_end_of_fault_window() -> None:
    """resume_ms runs from the network coming back to the first fresh event or state."""
    seen = [prog(1, 105), obs("alive", 480), prog(2, 520)]
    window = FaultWindow(kind="tunnel", start_wall_ns=150 * MS, end_wall_ns=450 * MS)
    row, _ = account(record(seen, fault_windows=[window]), {JOB: truth()})
    assert row.resume_ms == (30.0,)


def test_summary_cell_has_every_results_md_field() -> None:
    """The summary cell carries the RESULTS.md aggregate names."""
    row, events = account(record(in_order()), {JOB: truth()})
    cell = summarize(
        "polling", "clean", [row], events, meters={"x": 1.0}, cost_usd_per_1k_jobs=0.5
    ).model_dump(by_alias=True)
    for key in (
        "transport",
        "profile",
        "sessions",
        "jobs",
        "events_expected",
        "events_received",
        "delivery_ratio",
        "lost",
        "duplicates",
        "out_of_order",
        "terminal_ratio",
        "latency_ms",
        "terminal_latency_ms",
        "disconnects",
        "reconnects",
        "resumes",
        "resume_ms",
        "silent_stalls",
        "foreign_events",
        "duplicate_executions",
        "cost_usd_per_1k_jobs",
        "meters",
    ):
        assert key in cell, key
    assert set(cell["latency_ms"]) == {"p50", "p95", "p99"}
    assert set(cell["terminal_latency_ms"]) == set(cell["resume_ms"]) == {"p50", "p95"}
    assert cell["delivery_ratio"] == 1.0 and cell["meters"] == {"x": 1.0}
    assert cell["delivery_ratio"] == 1.0 and cell["terminal_ratio"] == 1.0
    assert set(cell["latency_ms"]) == {"p50", "p95", "p99"}  # type: ignore[arg-type]


def test_interrupted_session_is_not_charged_for_events_after_it_stopped() -> None:
    """An interrupted phone is scored on what was committed while it was watching."""
    row, _ = account(record(in_order()[:2], end_ms=250, outcome="interrupted"), {JOB: truth()})
    assert (row.events_expected, row.events_received, row.lost) == (2, 2, 0)
    assert row.outcome == "interrupted"
