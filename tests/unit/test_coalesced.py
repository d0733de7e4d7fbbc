"""A state poller's missed steps: coalesced (a later state replaced them between two reads), not lost."""

from __future__ import annotations

from progressbench.core.ledger import account, summarize
from progressbench.core.session_scores import coalesced
from tests.unit.test_ledger import JOB, commits, obs, prog, record, truth

# truth(): steps 1-4 committed at 100, 200, 300, 400 ms, done (seq 5) at 500 ms.


def polled(*seqs_at: tuple[int, float], alive: tuple[float, ...] = ()) -> list:  # type: ignore[type-arg]
    out = [prog(seq, at, "done" if seq == 5 else "step") for seq, at in seqs_at]
    out += [obs("alive", at) for at in alive]
    return sorted(out, key=lambda o: o.wall_ns)


def test_steps_replaced_between_two_polls_are_coalesced() -> None:
    """Polls at 150, 450 and 550 ms see steps 1, 4 and done; steps 2 and 3 came and went in between."""
    seen = polled((1, 150), (4, 450), (5, 550))
    assert coalesced(seen, commits()) == {(JOB, 2), (JOB, 3)}


def test_nothing_is_coalesced_when_every_state_was_read() -> None:
    assert coalesced(polled((1, 150), (2, 250), (3, 350), (4, 450), (5, 550)), commits()) == set()


def test_a_state_still_current_when_the_client_stopped_reading_is_lost() -> None:
    """The client's last answer came at 350 ms: step 4 and done were never replaced before it."""
    seen = polled((1, 150), (3, 350))
    assert coalesced(seen, commits()) == {(JOB, 2)}


def test_an_unchanged_answer_counts_as_a_read() -> None:
    """A 304 at 450 ms after step 3 was replaced makes step 3 coalesced, though nothing new was shown."""
    seen = polled((1, 150), (2, 250), alive=(450,))
    assert coalesced(seen, commits()) == {(JOB, 3)}


def test_ledger_scores_coalesced_apart_from_lost_for_a_state_poller() -> None:
    """delivery_ratio still counts what arrived; `lost` excludes what polling cannot see by design."""
    seen = polled((1, 150), (4, 450), (5, 550))
    row, events = account(record(seen, coalescing=True), {JOB: truth()})
    assert (row.events_expected, row.events_received, row.coalesced, row.lost) == (5, 3, 2, 0)
    assert row.terminal_received
    cell = summarize("polling", "clean", [row], events)
    assert cell.coalesced == 2 and cell.lost == 0 and cell.delivery_ratio == 0.6


def test_a_log_reader_has_nothing_coalesced_its_gaps_are_lost() -> None:
    """The same observations from a watcher that reads the event log: the missing steps are lost."""
    seen = polled((1, 150), (4, 450), (5, 550))
    row, _ = account(record(seen), {JOB: truth()})
    assert (row.coalesced, row.lost) == (0, 2)


def test_states_missed_during_an_outage_are_coalesced_and_the_resume_is_no_gap() -> None:
    """Polls fail from 160 to 420 ms; the first answer after shows step 4. Steps 2, 3 passed meanwhile:
    coalesced, and the reconnect showed the current state, so it is not a silent gap."""
    seen = [
        prog(1, 150),
        obs("disconnected", 160, detail="ConnectError"),
        obs("reconnected", 420, seq=1),
        prog(4, 421),
        prog(5, 550, "done"),
    ]
    row, _ = account(record(seen, coalescing=True), {JOB: truth()})
    assert row.coalesced == 2 and row.lost == 0
    assert row.resume_replayed_complete == 1 and row.resume_silent_gap == 0


def test_coalescing_is_per_job_and_needs_a_later_state_of_the_same_job() -> None:
    """The last state of a job (its terminal) is never coalesced, whatever the client read afterwards."""
    seen = polled((1, 150), alive=(700,))
    assert (JOB, 5) not in coalesced(seen, commits(truth()))
    assert coalesced(seen, commits(truth())) == {(JOB, 2), (JOB, 3), (JOB, 4)}
