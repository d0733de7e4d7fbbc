"""The ledger scores what a phone saw against the store, without sockets."""

from __future__ import annotations

from progressbench.core.events import FaultWindow, Observation, SessionRecord
from progressbench.core.ledger import CommittedEvent, JobTruth, account, summarize
from progressbench.core.session_scores import Commit, classify_resumes

JOB = "job-a"
MS = 1_000_000  # ns


def truth(n_steps: int = 4, kind: str = "done", runs: dict[int, int] | None = None) -> JobTruth:
    events = [CommittedEvent(s, "step", s * 100 * MS) for s in range(1, n_steps + 1)]
    events.append(CommittedEvent(n_steps + 1, kind, (n_steps + 1) * 100 * MS))
    return JobTruth(JOB, kind, tuple(events), runs or {s: 1 for s in range(1, n_steps + 1)})


def commits(t: JobTruth | None = None) -> list[Commit]:
    t = t or truth()
    return [Commit(t.job_id, e.seq, e.committed_wall_ns) for e in t.events]


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
    assert classify_resumes(seen, commits()) == {"replayed-complete": 1}


def test_resume_silent_gap() -> None:
    """After a reconnect the client only gets new events: a silent gap."""
    seen = [
        prog(1, 105),
        obs("disconnected", 150),
        obs("reconnected", 350),
        prog(4, 405),
        prog(5, 505, "done"),
    ]
    assert classify_resumes(seen, commits()) == {"silent-gap": 1}


def test_resume_gap_flagged() -> None:
    """Loss the transport admits to is gap-flagged, not silent."""
    seen = [
        prog(1, 105),
        obs("disconnected", 150),
        obs("reconnected", 350),
        obs("gap_flagged", 351, seq=1),
        prog(4, 405),
    ]
    assert classify_resumes(seen, commits()) == {"gap-flagged": 1}


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
    assert classify_resumes(seen, commits()) == {"duplicate-replay": 1}


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


# ------------------------------------------------------------------ schema 2: what the user lived through

JOB2 = "job-b"


def test_flapping_link_without_loss_is_not_a_silent_gap() -> None:
    """A reconnect dropped again before any event, with nothing due in it, loses nothing."""
    seen = [
        prog(1, 105),
        obs("disconnected", 150),
        obs("reconnected", 160),
        obs("disconnected", 170),  # dropped again before anything was due (step 2 commits at 200)
        obs("reconnected", 300),
        prog(2, 301),
        prog(3, 305),
        prog(4, 405),
        prog(5, 505, "done"),
    ]
    assert classify_resumes(seen, commits()) == {"replayed-complete": 2}
    row, _ = account(record(seen), {JOB: truth()})
    assert row.lost == 0 and row.resume_silent_gap == 0 and row.resumes == 2


def test_flap_with_an_event_due_and_never_recovered_is_a_silent_gap() -> None:
    """An empty window is still charged with what was committed in it and never arrived."""
    seen = [
        prog(1, 105),
        obs("disconnected", 150),
        obs("reconnected", 160),
        obs("disconnected", 250),  # step 2 committed at 200 while connected, never delivered
        obs("reconnected", 300),
        prog(3, 305),
    ]
    outcomes = classify_resumes(seen, commits())
    assert outcomes["silent-gap"] == 2  # both windows skipped step 2


def rerun_truths() -> dict[str, JobTruth]:
    """The naive pattern: job-a ran to the end unobserved, the re-POST made job-b which ran again."""
    first = truth()
    second = JobTruth(
        JOB2,
        "done",
        tuple(CommittedEvent(s, "step" if s < 5 else "done", (600 + s * 100) * MS) for s in range(1, 6)),
        {s: 1 for s in range(1, 5)},
    )
    return {JOB: first, JOB2: second}


def naive_rerun() -> list[Observation]:
    return [
        prog(1, 105),
        prog(2, 205),
        obs("disconnected", 250, detail="reset"),
        obs("resubmitted", 600, job_id=JOB2),
        obs("connected", 601),
        prog(1, 705, job=JOB2),
        prog(2, 805, job=JOB2),
        prog(3, 905, job=JOB2),
        prog(4, 1005, job=JOB2),
        prog(5, 1105, "done", job=JOB2),
    ]


def test_naive_repost_is_a_second_execution_not_a_replay() -> None:
    """A re-POST that reran the work: two executions, a regression, and the first job's events lost."""
    record_ = record(naive_rerun(), end_ms=1200, extra_job_ids=[JOB2])
    row, _ = account(record_, rerun_truths())
    assert row.executions == 2 and row.duplicate_execution
    assert row.progress_regressions == 1  # the bar went from step 2 back to step 1
    assert row.events_expected == 5 and row.events_received == 2 and row.lost == 3
    assert row.terminal_received


def test_rerun_after_reconnect_is_classified_restarted() -> None:
    """A reconnect whose stream starts the job again from its first step is `restarted`."""
    seen = [
        prog(1, 105),
        prog(2, 205),
        obs("disconnected", 250),
        obs("reconnected", 350),
        prog(1, 451),
        prog(2, 552),
    ]
    reran = truth(runs={1: 2, 2: 2, 3: 1, 4: 1})
    assert classify_resumes(seen, commits(reran), reran=[JOB]) == {"restarted": 1}
    row, _ = account(record(seen, outcome="deadline"), {JOB: reran})
    assert row.resume_restarted == 1 and row.resumes == 1 and row.resume_duplicate_replay == 0


def test_stall_sees_a_rerun_that_commits_nothing_new() -> None:
    """Work going on (job-b re-committing steps already shown) with a frozen screen is a silent stall."""
    seen = [
        prog(1, 105),
        prog(2, 205),
        prog(3, 305),
        prog(4, 405),
        obs("resubmitted", 450, job_id=JOB2),
        obs("connected", 451),
        # job-b commits steps 1..4 at 700..1000 and they arrive, but nothing beyond step 4 is new
        prog(1, 705, job=JOB2),
        prog(2, 805, job=JOB2),
        prog(3, 905, job=JOB2),
        prog(4, 1005, job=JOB2),
    ]
    truths = rerun_truths()
    # job-a was abandoned when its stream dropped: it committed steps 1..4 and nothing after
    truths[JOB] = JobTruth(JOB, "interrupted", truths[JOB].events[:4], {s: 1 for s in range(1, 5)})
    row, _ = account(record(seen, end_ms=1090, outcome="deadline", extra_job_ids=[JOB2]), truths)
    assert row.silent_stall and row.longest_silence_ms >= 300


def test_a_quiet_job_is_not_a_stall() -> None:
    """A long step that commits nothing leaves the screen still, but nothing is hidden from the user."""
    slow = JobTruth(
        JOB, "done", (CommittedEvent(1, "step", 100 * MS), CommittedEvent(2, "done", 900 * MS)), {1: 1}
    )
    seen = [prog(1, 105), prog(2, 905, "done")]
    row, _ = account(record(seen), {JOB: slow})
    assert not row.silent_stall


def test_wire_duplicates_are_counted_apart_from_shown_ones() -> None:
    """A repeat the client's dedupe dropped counts on the wire, not on the screen."""
    seen = in_order()
    dropped = prog(2, 250).model_copy(update={"shown": False})
    shown_twice = prog(3, 350)
    seen[3:3] = [dropped, shown_twice]
    row, events = account(record(seen), {JOB: truth()})
    assert (row.duplicates_wire, row.duplicates_shown, row.duplicates) == (2, 1, 1)
    assert row.events_received == 5
    assert [e.shown for e in events if e.duplicate] == [False, True]


def test_exposure_is_overlap_with_a_fault_window() -> None:
    """A session is exposed when one of its cell's fault windows overlapped its lifetime."""
    during = FaultWindow(kind="tunnel", start_wall_ns=150 * MS, end_wall_ns=450 * MS)
    after = FaultWindow(kind="tunnel", start_wall_ns=2000 * MS, end_wall_ns=2500 * MS)
    hit, _ = account(record(in_order(), fault_windows=[during]), {JOB: truth()})
    missed, _ = account(record(in_order(), fault_windows=[after]), {JOB: truth()})
    assert hit.exposed and not missed.exposed


def test_time_to_result_is_in_real_time_equivalent_seconds() -> None:
    """First request -> terminal event, divided by the time scale, and over the job's planned duration."""
    row, _ = account(record(in_order(), time_scale=0.1, planned_job_s=0.25), {JOB: truth()})
    assert row.time_to_result_s == 5.05  # 505 ms compressed at scale 0.1
    assert row.time_to_result_ratio == 2.02  # against a 2.5 s (real-time) job


def test_delivery_paths_count_first_receipts() -> None:
    """Each event counts once, under the path it first arrived by."""
    seen = in_order()
    seen[1] = seen[1].model_copy(update={"path": "refetch"})
    seen.append(prog(2, 600).model_copy(update={"path": "live"}))
    row, _ = account(record(seen), {JOB: truth()})
    assert (row.path_live, row.path_refetch) == (4, 1)


def test_live_events_committed_before_the_connection_stood_are_replays() -> None:
    """An event reported live but committed before its (re)connection was read back from history."""
    seen = [
        prog(1, 105),
        obs("disconnected", 150),
        obs("reconnected", 350),
        prog(2, 352),  # committed at 200, before the reconnect at 350: replayed (Last-Event-ID)
        prog(3, 353),  # committed at 300: replayed
        prog(4, 405),  # committed at 400, after: live
        prog(5, 505, "done"),
    ]
    row, events = account(record(seen), {JOB: truth()})
    assert (row.path_live, row.path_replay) == (3, 2)
    assert [e.path for e in events] == ["live", "replay", "replay", "live", "live"]


def test_cell_verdict_is_over_exposed_sessions() -> None:
    """The cell splits exposed from unexposed sessions and aggregates the exposed ones apart."""
    window = FaultWindow(kind="handoff", start_wall_ns=150 * MS, end_wall_ns=300 * MS)
    lossy = [o for o in in_order() if o.seq != 2]
    hit, hit_events = account(record(lossy, fault_windows=[window], session_id="hit"), {JOB: truth()})
    calm, calm_events = account(record(in_order(), session_id="calm"), {JOB: truth()})
    naive, naive_events = account(
        record(naive_rerun(), end_ms=1200, extra_job_ids=[JOB2], session_id="naive", time_scale=0.5),
        rerun_truths(),
    )
    cell = summarize("sse", "handoff", [hit, calm, naive], [*hit_events, *calm_events, *naive_events])
    assert (cell.exposed_sessions, cell.unexposed_sessions) == (1, 2)
    assert cell.exposed is not None and cell.exposed.sessions == 1 and cell.exposed.delivery_ratio == 0.8
    assert cell.exposed.exposed is None
    assert cell.executions_per_intent.max == 2 and cell.progress_regressions == 1
    assert cell.delivery_paths["live"] == hit.events_received + calm.events_received + 2 + 5  # both jobs
    assert cell.time_to_result_s.p50 is not None


def test_a_repeat_hidden_by_the_client_is_not_a_duplicate_replay() -> None:
    """A refetch overlapping what was seen, deduped by the app: replayed complete, and a wire duplicate."""
    hidden = prog(1, 352).model_copy(update={"shown": False, "path": "refetch"})
    seen = [prog(1, 105), obs("disconnected", 150), obs("reconnected", 350), hidden, prog(2, 353)]
    assert classify_resumes(seen, commits()) == {"replayed-complete": 1}
    row, _ = account(record(seen, outcome="deadline"), {JOB: truth()})
    assert row.duplicates_wire == 1 and row.duplicates_shown == 0


def test_durations_are_reported_in_real_time_with_the_measured_value_kept_raw() -> None:
    """At time scale 0.05 a 5 ms commit -> phone latency stands for 100 real ms; the CSV keeps 5 as
    ``_raw``; resume, first event, duration and silences alike; the cell's percentiles are real."""
    window = FaultWindow(kind="tunnel", start_wall_ns=150 * MS, end_wall_ns=180 * MS)
    rec = record(in_order(), time_scale=0.05, fault_windows=[window])
    row, events = account(rec, {JOB: truth()})
    assert [e.latency_ms for e in events] == [100.0] * 5
    assert [e.latency_ms_raw for e in events] == [5.0] * 5
    assert (row.terminal_latency_ms, row.terminal_latency_ms_raw) == (100.0, 5.0)
    assert (row.first_event_ms, row.first_event_ms_raw) == (2100.0, 105.0)
    assert (row.duration_ms, row.duration_ms_raw) == (20_000.0, 1000.0)
    assert (row.resume_ms, row.resume_ms_raw) == ((500.0,), (25.0,))
    assert row.longest_silence_ms == 20 * row.longest_silence_ms_raw
    csv = row.as_csv()
    assert (csv["resume_ms"], csv["resume_ms_raw"]) == ("500.0", "25.0")
    cell = summarize("polling", "clean", [row], events)
    assert cell.latency_ms.p50 == 100.0 and cell.resume_ms.p50 == 500.0
    assert cell.terminal_latency_ms.p50 == 100.0
