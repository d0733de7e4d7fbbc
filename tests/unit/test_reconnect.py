"""The sans-I/O reconnect core; each resume policy through the shared loop against a fake server."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from progressbench.transports.redial import Dropped, redial

from progressbench.core.errors import TransportError
from progressbench.core.events import (
    ClientEvent,
    Connected,
    Disconnected,
    Progress,
    Reconnected,
    Resumed,
)
from progressbench.core.reconnect import (
    LAST_EVENT_ID,
    POLL_CURSOR,
    REFETCH,
    RESTART,
    SNAPSHOT,
    Backoff,
    Reconnector,
    ResumePolicy,
    SeqBook,
)

JOB = "job-a"


def step(seq: int, kind: str = "step") -> Progress:
    return Progress(job_id=JOB, seq=seq, kind=kind, message=f"{kind} {seq}")


# ------------------------------------------------------------------ back-off


def test_backoff_waits_nothing_first_then_grows_geometrically_up_to_the_ceiling() -> None:
    """Retry 0 is immediate; then initial × factor^(n-1), never above the ceiling, even far out."""
    backoff = Backoff(initial=1.0, ceiling=10.0)
    assert [backoff.delay(n) for n in range(7)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay(10_000) == 10.0
    assert Backoff(initial=2.0, ceiling=10.0, factor=1.3).delay(3) == pytest.approx(3.38)


@pytest.mark.parametrize("jitter", [0.0, 0.5, 1.0])
def test_jittered_delays_stay_inside_their_band_and_under_the_ceiling(jitter: float) -> None:
    """Jitter only shortens: every delay lies in [(1 - jitter) × d, d] for the unjittered d."""
    plain = Backoff(initial=0.5, ceiling=30.0)
    jittered = Backoff(initial=0.5, ceiling=30.0, jitter=jitter)
    rng = random.Random(7)
    for retry in range(1, 40):
        d = plain.delay(retry)
        got = jittered.delay(retry, rng.uniform)
        assert (1.0 - jitter) * d <= got <= d <= 30.0
    assert jittered.delay(3, lambda low, high: low) == pytest.approx((1.0 - jitter) * 2.0)
    assert jittered.delay(3, lambda low, high: high) == 2.0


def test_floor_applies_before_the_jitter_and_a_fixed_delay_never_grows() -> None:
    """A floor lifts tiny scaled delays; factor 1 with ceiling = initial is EventSource's fixed retry."""
    floored = Backoff(initial=0.01, ceiling=1.0, floor=0.05, jitter=0.5)
    assert floored.delay(1, lambda low, high: low) == pytest.approx(0.025)
    fixed = Backoff(initial=3.0, ceiling=3.0, factor=1.0)
    assert {fixed.delay(n) for n in range(1, 50)} == {3.0}


@pytest.mark.parametrize(
    "bad",
    [
        {"initial": -1.0, "ceiling": 1.0},
        {"initial": 1.0, "ceiling": -1.0},
        {"initial": 1.0, "ceiling": 1.0, "factor": 0.5},
        {"initial": 1.0, "ceiling": 1.0, "jitter": 1.5},
        {"initial": 1.0, "ceiling": 1.0, "floor": -0.1},
    ],
)
def test_backoff_refuses_nonsense(bad: dict[str, float]) -> None:
    """Negative durations, a shrinking factor or jitter outside [0, 1] are programming errors."""
    with pytest.raises(ValueError, match="back-off"):
        Backoff(**bad)


# ------------------------------------------------------------------ seq book


def test_seq_book_dedupes_and_keeps_the_contiguous_prefix_apart_from_the_highest() -> None:
    """A hole holds the contiguous cursor below it while the highest moves on; filling it catches up."""
    book = SeqBook()
    assert [book.add(s) for s in (1, 2, 2, 1)] == [True, True, False, False]
    assert book.add(4) and (book.contiguous, book.highest) == (2, 4)
    assert book.missing_before(5) and not book.missing_before(3) and not book.missing_before(4)
    assert book.add(3) and (book.contiguous, book.highest) == (4, 4)
    assert not book.add(4) and book.seen(1) and not book.seen(5)


# ------------------------------------------------------------------ the state machine


def test_connected_once_and_each_outage_reported_once_with_its_attempts() -> None:
    """One Disconnected per outage, whatever its failures; back up: Reconnected(failures) + Resumed."""
    state = Reconnector(LAST_EVENT_ID)
    assert state.up(0.0) == [Connected()]
    assert state.up(0.5) == []
    state.receive(step(1))
    state.receive(step(2))
    assert state.dropped("cut", 1.0) == [Disconnected(reason="cut")]
    assert state.dropped("refused", 2.0) == [] and state.dropped("refused", 3.0) == []
    assert state.is_down and state.retry == 3
    assert state.up(4.0) == [Reconnected(attempt=3), Resumed(from_seq=2)]
    assert not state.is_down
    assert state.dropped("cut", 9.0) == [Disconnected(reason="cut")] and state.retry == 1


def test_failures_before_the_first_connection_are_an_outage_unless_the_connection_makes_the_job() -> None:
    """A stream that never opened is a drop to report; a restart-only POST that never opened made no job."""
    resumable = Reconnector(LAST_EVENT_ID)
    assert resumable.dropped("refused", 0.0) == [Disconnected(reason="refused")]
    assert resumable.up(1.0) == [Connected(), Reconnected(attempt=1), Resumed(from_seq=0)]
    naive = Reconnector(RESTART)
    assert naive.dropped("refused", 0.0) == [] and naive.retry == 1
    assert naive.up(1.0) == [Connected()]
    assert naive.dropped("cut", 2.0) == [Disconnected(reason="cut")]
    assert naive.up(3.0) == [Reconnected(attempt=1)], "nothing to resume after a restart"


def test_a_new_job_starts_its_seqs_again() -> None:
    """After a naive re-POST the new job's step 1 is new, not a duplicate of the old job's step 1."""
    naive = Reconnector(RESTART)
    naive.up(0.0)
    assert not naive.receive(step(1)).duplicate
    naive.dropped("cut", 1.0)
    naive.new_job()
    naive.up(2.0)
    first = naive.receive(step(1))
    assert not first.duplicate and first.shown and naive.book.highest == 1


def test_a_deferred_resume_waits_for_the_driver_and_is_sent_once() -> None:
    """Refetch resumes only when the feed is live again; later live signals resume nothing."""
    state = Reconnector(REFETCH)
    state.up(0.0)
    assert state.resume() == [], "the first subscribe is not a resume"
    state.receive(step(1))
    state.dropped("CHANNEL_ERROR", 1.0)
    assert state.up(2.0) == [Reconnected(attempt=1)]
    assert state.resume() == [Resumed(from_seq=1)]
    assert state.resume() == []


def test_the_retry_counter_resets_only_after_a_stable_connection() -> None:
    """partysocket keeps growing its delay while sockets flap, and starts over after minUptime up."""
    state = Reconnector(SNAPSHOT, stable_after_s=5.0)
    state.up(0.0)
    state.dropped("closed", 1.0)  # up 1 s: flapping
    state.up(2.0)
    state.dropped("closed", 3.0)
    assert state.retry == 2
    state.up(4.0)
    state.dropped("closed", 10.0)  # up 6 s: stable
    assert state.retry == 1


@pytest.mark.parametrize(
    ("policy", "shows_duplicates"),
    [(LAST_EVENT_ID, True), (POLL_CURSOR, True), (RESTART, True), (SNAPSHOT, False), (REFETCH, False)],
)
def test_every_receipt_says_whether_it_is_a_duplicate_and_the_policy_decides_if_it_shows(
    policy: ResumePolicy, shows_duplicates: bool
) -> None:
    """The dedupe decision is data on the receipt; the first shown terminal event ends the watch."""
    state = Reconnector(policy)
    first, again = state.receive(step(1)), state.receive(step(1))
    assert (first.duplicate, first.shown) == (False, True)
    assert (again.duplicate, again.shown) == (True, shows_duplicates)
    assert not state.finished
    done = step(2, "done")
    assert state.receive(done).finishes and state.final is done
    assert state.receive(step(2, "done")).finishes is shows_duplicates
    assert state.final is done


def test_show_books_each_event_only_as_it_is_taken() -> None:
    """A lazy batch keeps the book in step with what the user has seen so far."""
    state = Reconnector(SNAPSHOT)
    receipts = state.show([step(1), step(1), step(2)])
    assert next(receipts) == step(1) and state.book.highest == 1
    rest = list(receipts)
    assert [(e.seq, e.shown) for e in rest] == [(1, False), (2, True)] and state.book.contiguous == 2


@pytest.mark.parametrize(
    ("policy", "cursor"), [(LAST_EVENT_ID, 4), (POLL_CURSOR, 4), (SNAPSHOT, 2), (REFETCH, 2), (RESTART, 0)]
)
def test_the_cursor_is_the_highest_seq_the_contiguous_prefix_or_nothing(
    policy: ResumePolicy, cursor: int
) -> None:
    """Last-Event-ID and a poll cursor continue after the highest seq; snapshot and refetch refill holes."""
    state = Reconnector(policy)
    for seq in (1, 2, 4):
        state.receive(step(seq))
    assert state.cursor == cursor


# ------------------------------------------------------------------ a fake server


@dataclass
class FakeServer:
    """One job in memory behind a connection that breaks on a script.

    ``plan`` has one entry per connection attempt: how many events the job
    commits while that connection stands before it breaks, or ``None`` for
    a refused attempt; attempts beyond the plan stand until the job ends.
    Each break is followed by ``outage`` commits nobody sees live. Live
    messages for ``lost`` seqs are dropped while the connection stays up;
    with ``echo_on_join`` a fresh connection first gets the latest committed
    event again (a room joined before its snapshot is read).
    """

    steps: int
    plan: list[int | None]
    outage: int = 0
    lost: set[int] = field(default_factory=set)
    echo_on_join: bool = False
    committed: int = 0
    attempts: int = 0

    def event(self, seq: int) -> Progress:
        return step(seq, "done" if seq == self.steps + 1 else "step")

    def after(self, seq: int) -> list[Progress]:
        return [self.event(s) for s in range(seq + 1, self.committed + 1)]

    def _commit(self) -> Progress | None:
        if self.committed > self.steps:
            return None
        self.committed += 1
        return self.event(self.committed)

    def connect(self) -> int:
        budget = self.plan[self.attempts] if self.attempts < len(self.plan) else self.steps + 1
        self.attempts += 1
        if budget is None:
            raise Dropped("refused")
        return budget

    def live(self, budget: int) -> Iterator[Progress]:
        """The live messages while one connection stands; then it breaks (``Dropped``)."""
        if self.echo_on_join and self.committed:
            yield self.event(self.committed)
        for _ in range(budget):
            event = self._commit()
            if event is None:
                break
            if event.seq not in self.lost:
                yield event
        for _ in range(self.outage):
            self._commit()
        raise Dropped("cut")


# One fake client per resume policy: the same shape as the watchers, minus the sockets.


async def last_event_id_client(server: FakeServer, state: Reconnector) -> AsyncGenerator[ClientEvent, None]:
    budget = server.connect()
    for event in state.up(0.0):
        yield event
    for event in state.show(server.after(state.cursor)):  # the server replays after Last-Event-ID
        yield event
    for live in server.live(budget):
        for event in state.show([live]):
            yield event


async def polling_client(server: FakeServer, state: Reconnector) -> AsyncGenerator[ClientEvent, None]:
    budget = server.connect()
    for _ in server.live(budget):  # each live commit stands for one poll interval
        for event in state.up(0.0):
            yield event
        for event in state.show(server.after(state.cursor)):
            yield event


async def snapshot_client(server: FakeServer, state: Reconnector) -> AsyncGenerator[ClientEvent, None]:
    budget = server.connect()
    for event in state.up(0.0):
        yield event
    for event in state.show(server.after(state.cursor)):
        yield event
    for live in server.live(budget):
        if state.book.missing_before(live.seq):
            for event in state.show(server.after(state.cursor)):
                yield event
        for event in state.show([live]):
            yield event


async def refetch_client(server: FakeServer, state: Reconnector) -> AsyncGenerator[ClientEvent, None]:
    budget = server.connect()
    for event in state.up(0.0):  # SUBSCRIBED
        yield event
    for event in state.resume():  # "Subscribed to PostgreSQL"
        yield event
    for event in state.show(server.after(state.cursor)):  # the app's refetch
        yield event
    for live in server.live(budget):  # realtime rows, no gap check
        for event in state.show([live]):
            yield event


async def restart_client(server: FakeServer, state: Reconnector) -> AsyncGenerator[ClientEvent, None]:
    budget = server.connect()
    for event in state.up(0.0):
        yield event
    for live in server.live(budget):
        for event in state.show([live]):
            yield event


Client = Callable[[FakeServer, Reconnector], AsyncGenerator[ClientEvent, None]]
BACKOFF = Backoff(initial=1.0, ceiling=10.0)


async def watch(
    server: FakeServer, policy: ResumePolicy, client: Client
) -> tuple[list[ClientEvent], list[float]]:
    """Everything the watch yields and every wait it asked for (no time passes)."""
    state = Reconnector(policy)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    clock = itertools.count().__next__
    events = [
        e async for e in redial(state, BACKOFF.delay, lambda: client(server, state), clock=clock, sleep=sleep)
    ]
    return events, waits


def shown(events: list[ClientEvent]) -> list[int]:
    """The seqs the user saw (the watchers report every receipt; repeats the dedupe hid are not shown)."""
    return [e.seq for e in events if isinstance(e, Progress) and e.shown]


def received(events: list[ClientEvent]) -> list[int]:
    """Every receipt on the wire, repeats included."""
    return [e.seq for e in events if isinstance(e, Progress)]


def connection_events(events: list[ClientEvent]) -> list[ClientEvent]:
    return [e for e in events if not isinstance(e, Progress)]


async def test_last_event_id_replays_the_gap_after_the_highest_seq() -> None:
    """Cut after 3, two events missed, one refused attempt: the replay after 3 completes the job once."""
    server = FakeServer(steps=8, plan=[3, None], outage=2)
    events, waits = await watch(server, LAST_EVENT_ID, last_event_id_client)
    assert shown(events) == list(range(1, 10))
    assert connection_events(events) == [
        Connected(),
        Disconnected(reason="cut"),
        Reconnected(attempt=2),
        Resumed(from_seq=3),
    ]
    assert waits == [1.0, 2.0]


async def test_a_poll_cursor_reads_the_truth_after_the_highest_seq() -> None:
    """Polls coalesce what was committed meanwhile; the first good poll after the outage resumes."""
    server = FakeServer(steps=8, plan=[3, None, None], outage=2)
    events, waits = await watch(server, POLL_CURSOR, polling_client)
    assert shown(events) == list(range(1, 10))
    assert connection_events(events) == [
        Connected(),
        Disconnected(reason="cut"),
        Reconnected(attempt=3),
        Resumed(from_seq=3),
    ]
    assert waits == [1.0, 2.0, 4.0]


async def test_a_snapshot_refills_a_lost_message_and_hides_the_overlap() -> None:
    """A dropped publish is fetched before the message after it; the room's echo of the snapshot
    is not shown twice; the resume asks after the contiguous prefix."""
    server = FakeServer(steps=8, plan=[4], outage=2, lost={2}, echo_on_join=True)
    events, _ = await watch(server, SNAPSHOT, snapshot_client)
    assert shown(events) == list(range(1, 10))
    # the echo is still reported, as a receipt the user did not see (a duplicate on the wire)
    assert sorted(received(events)) != shown(events) and set(received(events)) == set(shown(events))
    assert connection_events(events) == [
        Connected(),
        Disconnected(reason="cut"),
        Reconnected(attempt=1),
        Resumed(from_seq=4),
    ]


async def test_a_refetch_after_the_contiguous_prefix_fills_the_hole_a_live_row_left() -> None:
    """Realtime delivers 4 without 3; the resume refetches after 2, so 3 arrives and 4 is not repeated."""
    server = FakeServer(steps=8, plan=[4], outage=2, lost={3})
    events, _ = await watch(server, REFETCH, refetch_client)
    assert shown(events) == [1, 2, 4, 3, 5, 6, 7, 8, 9]
    assert connection_events(events) == [
        Connected(),
        Disconnected(reason="cut"),
        Reconnected(attempt=1),
        Resumed(from_seq=2),
    ]


async def test_a_restart_resumes_nothing_and_loses_what_was_committed_meanwhile() -> None:
    """Without a cursor the new connection carries only new events: a silent gap, no Resumed."""
    server = FakeServer(steps=8, plan=[3], outage=2)
    events, waits = await watch(server, RESTART, restart_client)
    assert shown(events) == [1, 2, 3, 6, 7, 8, 9]
    assert connection_events(events) == [Connected(), Disconnected(reason="cut"), Reconnected(attempt=1)]
    assert waits == [1.0]


async def test_the_watch_ends_at_the_terminal_event_even_inside_a_booked_batch() -> None:
    """A batch booked before it is yielded (a snapshot list) is shown whole up to the terminal event."""
    state = Reconnector(SNAPSHOT)
    closed: list[bool] = []

    async def batch() -> AsyncGenerator[ClientEvent, None]:
        try:
            rows = [step(1), step(2), step(3, "done")]
            booked = [e for e in rows if state.receive(e).shown]
            for event in booked:
                yield event
            yield step(4)  # never reached: the watch is over
        finally:
            closed.append(True)

    async def no_sleep(seconds: float) -> None:
        raise AssertionError("nothing failed")

    events = [e async for e in redial(state, BACKOFF.delay, batch, sleep=no_sleep)]
    assert shown(events) == [1, 2, 3] and closed == [True]


async def test_the_loop_closes_each_attempt_before_reporting_its_drop_and_honours_retry_after() -> None:
    """Disconnected comes after the attempt's teardown; a server hint lengthens the wait; an attempt
    that ends without the terminal event is a drop, not the end of the watch."""
    state = Reconnector(POLL_CURSOR)
    log: list[str] = []
    attempts = iter(["retry-after", "ends", "done"])

    async def attempt() -> AsyncGenerator[ClientEvent, None]:
        kind = next(attempts)
        try:
            for event in state.up(0.0):
                yield event
            if kind == "retry-after":
                raise Dropped("http 503", retry_after=7.0)
            if kind == "done":
                for event in state.show([step(1, "done")]):
                    yield event
        finally:
            log.append(f"closed {kind}")

    async def sleep(seconds: float) -> None:
        log.append(f"sleep {seconds}")

    async for event in redial(state, BACKOFF.delay, attempt, clock=lambda: 0.0, sleep=sleep):
        log.append(type(event).__name__)
    assert log == [
        "Connected",
        "closed retry-after",
        "Disconnected",
        "sleep 7.0",
        "Reconnected",
        "Resumed",
        "closed ends",
        "Disconnected",
        "sleep 1.0",
        "Reconnected",
        "Resumed",
        "Progress",
        "closed done",
    ]


async def test_a_condition_no_retry_fixes_ends_the_watch() -> None:
    """A TransportError (a refused token, an unknown job) propagates instead of being retried."""
    state = Reconnector(LAST_EVENT_ID)

    async def refused() -> AsyncGenerator[ClientEvent, None]:
        raise TransportError("event stream answered 401")
        yield Connected()  # pragma: no cover - makes this an async generator

    with pytest.raises(TransportError, match="401"):
        [e async for e in redial(state, BACKOFF.delay, refused)]
