"""One store read per change of a job, fanned out to every stream of it in the process."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from progressbench.kit.notify import JobFeed
from progressbench.kit.store import EventRow

JOB = uuid.uuid4()


class Store:
    """The job's committed events, and every read made of them."""

    def __init__(self) -> None:
        self.events: list[EventRow] = []
        self.reads: list[int] = []

    def commit(self, seq: int) -> None:
        self.events.append(EventRow(JOB, seq, "step", f"step {seq}", {}, datetime.now(UTC)))

    async def read(self, job_id: uuid.UUID, after: int) -> list[EventRow]:
        assert job_id == JOB
        self.reads.append(after)
        await asyncio.sleep(0)  # a real read yields to the loop: others queue behind the lock
        return [e for e in self.events if e.seq > after]


def seqs(rows: list[EventRow]) -> list[int]:
    return [r.seq for r in rows]


def test_ten_streams_woken_by_one_change_cost_one_read() -> None:
    async def main() -> None:
        store = Store()
        feed = JobFeed(JOB, store.read)
        for seq in (1, 2):
            store.commit(seq)
        assert seqs(await feed.after(0, feed.ticket())) == [1, 2]
        store.commit(3)  # a notification wakes ten streams at seq 2; each takes a ticket, then looks
        tickets = [feed.ticket() for _ in range(10)]
        got = await asyncio.gather(*(feed.after(2, t) for t in tickets))
        assert all(seqs(rows) == [3] for rows in got)
        assert store.reads == [0, 2], "the wake-up read once, from the last event the feed held"

    asyncio.run(main())


def test_a_stale_answer_is_never_given_to_a_stream_that_must_look() -> None:
    """A ticket taken after a read finished needs a new read; an older ticket is served from memory."""

    async def main() -> None:
        store = Store()
        feed = JobFeed(JOB, store.read)
        store.commit(1)
        old = feed.ticket()
        await feed.after(0, old)
        store.commit(2)
        assert seqs(await feed.after(1, old)) == [], "same look, same read"
        assert seqs(await feed.after(1, feed.ticket())) == [2]
        assert store.reads == [0, 1]

    asyncio.run(main())


def test_a_stream_behind_the_window_replays_from_its_cursor_and_widens_it() -> None:
    async def main() -> None:
        store = Store()
        feed = JobFeed(JOB, store.read)
        for seq in range(1, 6):
            store.commit(seq)
        assert seqs(await feed.after(3, feed.ticket())) == [4, 5]
        assert seqs(await feed.after(0, feed.ticket())) == [1, 2, 3, 4, 5], "Last-Event-ID 0 gets all"
        assert seqs(await feed.after(1, 0)) == [2, 3, 4, 5], "now in the window: from memory"
        assert store.reads == [3, 0]

    asyncio.run(main())
