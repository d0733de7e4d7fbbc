"""The ``sse`` fan-out: one read per change of a job, each event encoded once, no gap on attaching."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from progressbench.transports.sse.fanout import Fanout, JobChannel, Sink
from progressbench.transports.sse.stream import JobStream
from progressbench.transports.sse.wire import SSEParser

from progressbench.core.job import EventKind
from progressbench.kit.notify import JobFeed, Subscription
from progressbench.kit.store import EventRow
from tests.helpers import wait_until

JOB = uuid.uuid4()
#: Long enough that neither the heartbeat nor the fallback re-check fires within a test.
QUIET_S = 3600.0


class Store:
    """The job's committed events, every read made of them, and a gate to hold a read mid-way."""

    def __init__(self) -> None:
        self.events: list[EventRow] = []
        self.reads: list[int] = []
        self.gate: asyncio.Event | None = None

    def commit(self, seq: int, kind: EventKind = "step") -> None:
        self.events.append(EventRow(JOB, seq, kind, f"event {seq}", {}, datetime.now(UTC)))

    async def read(self, job_id: uuid.UUID, after: int) -> list[EventRow]:
        self.reads.append(after)
        snapshot = [e for e in self.events if e.seq > after]  # what the query sees when it begins
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        return snapshot


class Hub:
    """The notify hub as the channels see it: subscriptions and a way to announce a change."""

    def __init__(self, store: Store) -> None:
        self.ready = asyncio.Event()
        self.ready.set()
        self.subs: list[Subscription] = []
        self._feeds: dict[uuid.UUID, JobFeed] = {}
        self._store = store

    def join(self, job_id: uuid.UUID) -> Subscription:
        feed = self._feeds.setdefault(job_id, JobFeed(job_id, self._store.read))
        sub = Subscription(job_id, feed)
        self.subs.append(sub)
        return sub

    def leave(self, sub: Subscription) -> None:
        self.subs.remove(sub)

    def announce(self) -> None:
        for sub in self.subs:
            sub.wake()


class Messages:
    def __init__(self) -> None:
        self.count = 0.0

    def inc(self, amount: float = 1) -> None:
        self.count += amount


def ids(data: bytes) -> list[str]:
    items = SSEParser().feed(data)
    return [str(getattr(item, "id", None)) for item in items if getattr(item, "id", None) is not None]


def run(test: Callable[[Store, Hub, Fanout], Awaitable[None]]) -> None:
    async def main() -> None:
        store = Store()
        hub = Hub(store)
        fanout = Fanout(hub, asyncio.Event(), Messages(), heartbeat_s=QUIET_S, fallback_s=QUIET_S)
        await test(store, hub, fanout)

    asyncio.run(main())


async def attach(fanout: Fanout, cursor: int = 0) -> tuple[JobChannel, Sink, bytes]:
    channel = fanout.channel(JOB)
    sink = Sink(cursor)
    channel.attach(sink)
    return channel, sink, await channel.replay(sink, finished=False)


def test_ten_streams_woken_by_one_change_cost_one_read_and_share_the_same_bytes() -> None:
    async def body(store: Store, hub: Hub, fanout: Fanout) -> None:
        store.commit(1)
        opened = [await attach(fanout) for _ in range(10)]
        assert all(ids(replay) == ["1"] for _, _, replay in opened)
        assert store.reads == [0], "the first stream read; the nine others replayed from the window"
        store.commit(2)
        hub.announce()
        sinks = [sink for _, sink, _ in opened]
        await wait_until(lambda: all(s.cursor == 2 for s in sinks), 5, "every stream at seq 2")
        assert store.reads == [0, 1], "one read for the change, from the last event the feed held"
        pushed = [s.take() for s in sinks]
        assert ids(pushed[0]) == ["2"]
        assert all(p == pushed[0] for p in pushed)
        channel = opened[0][0]
        assert all(channel.wire(e) is channel.wire(e) for e in store.events), "encoded once, then reused"

    run(body)


def test_a_stream_attaching_during_the_pumps_read_misses_nothing_and_gets_nothing_twice() -> None:
    async def body(store: Store, hub: Hub, fanout: Fanout) -> None:
        store.commit(1)
        _, first, _ = await attach(fanout)
        store.commit(2)
        store.gate = asyncio.Event()
        hub.announce()  # the pump's read of seq 2 begins and is held mid-way
        await wait_until(lambda: len(store.reads) == 2, 5, "the pump's read to begin")
        store.commit(3)  # committed after that read began: it cannot see it
        late = Sink(0)
        channel = fanout.channel(JOB)
        channel.attach(late)
        replaying = asyncio.create_task(channel.replay(late, finished=False))
        hub.announce()  # the announcement of seq 3
        store.gate.set()
        replay = await replaying
        await wait_until(lambda: first.cursor == 3 and late.cursor == 3, 5, "both streams at seq 3")
        assert ids(replay + late.take()) == ["1", "2", "3"]
        assert ids(first.take()) == ["2", "3"]

    run(body)


def test_a_stream_behind_the_window_reads_from_its_cursor() -> None:
    async def body(store: Store, hub: Hub, fanout: Fanout) -> None:
        for seq in range(1, 6):
            store.commit(seq)
        _, _, replay = await attach(fanout, cursor=3)
        assert ids(replay) == ["4", "5"]
        _, _, replay = await attach(fanout, cursor=0)
        assert ids(replay) == ["1", "2", "3", "4", "5"], "Last-Event-ID 0 gets everything"
        assert store.reads == [3, 0]

    run(body)


def test_the_terminal_event_ends_every_stream_and_a_finished_job_is_read_not_remembered() -> None:
    async def body(store: Store, hub: Hub, fanout: Fanout) -> None:
        store.commit(1)
        channel, sink, _ = await attach(fanout)
        store.commit(2, "done")
        hub.announce()
        await wait_until(lambda: sink.done, 5, "the stream to be done")
        assert ids(sink.take()) == ["2"]
        reads = len(store.reads)
        late = Sink(2)  # a reconnect after the end, at the terminal seq
        channel.attach(late)
        assert await channel.replay(late, finished=True) == b""
        assert late.done and len(store.reads) == reads + 1, "a finished job's replay is read afresh"

    run(body)


def test_the_last_stream_to_leave_closes_the_channel_and_its_subscription() -> None:
    async def body(store: Store, hub: Hub, fanout: Fanout) -> None:
        channel, first, _ = await attach(fanout)
        _, second, _ = await attach(fanout)
        channel.detach(first)
        assert len(hub.subs) == 1 and fanout.channel(JOB) is channel
        channel.detach(second)
        assert hub.subs == [] and fanout.streams == 0
        assert fanout.channel(JOB) is not channel, "a new stream opens a new channel"

    run(body)


def test_shutdown_ends_every_open_stream() -> None:
    async def main() -> None:
        store = Store()
        shutdown = asyncio.Event()
        fanout = Fanout(Hub(store), shutdown, Messages(), heartbeat_s=QUIET_S, fallback_s=QUIET_S)
        sinks = [(await attach(fanout))[1] for _ in range(3)]
        shutdown.set()
        await wait_until(lambda: all(s.done for s in sinks), 5, "every stream to be done")

    asyncio.run(main())


class Client:
    """The ASGI side of one stream: what was sent, and a disconnect to trigger."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.gone = asyncio.Event()
        self._requested = False

    async def receive(self) -> dict[str, object]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, object]) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")  # type: ignore[misc]

    @property
    def ended(self) -> bool:
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.sent)


def serve(fanout: Fanout, client: Client, cursor: int = 0, deadline_s: float = QUIET_S) -> asyncio.Task[None]:
    deadline = asyncio.get_running_loop().time() + deadline_s
    response = JobStream(
        fanout, JOB, cursor, deadline, b": stream open\r\nretry: 2000\r\n\r\n", finished=False
    )
    scope = {"type": "http", "method": "GET"}
    return asyncio.create_task(response(scope, client.receive, client.send))  # type: ignore[arg-type]


def test_a_stream_writes_its_replay_then_what_is_pushed_and_ends_after_the_terminal_event() -> None:
    async def body(store: Store, hub: Hub, fanout: Fanout) -> None:
        store.commit(1)
        client = Client()
        task = serve(fanout, client)
        await wait_until(lambda: ids(client.body) == ["1"], 5, "the replay")
        assert client.body.startswith(b": stream open\r\nretry: 2000"), "the retry hint goes first"
        store.commit(2)
        store.commit(3, "done")
        hub.announce()
        await asyncio.wait_for(task, 5)
        assert ids(client.body) == ["1", "2", "3"] and client.ended
        assert fanout.streams == 0 and hub.subs == [], "the stream left its channel"

    run(body)


def test_a_stream_ends_when_its_client_goes_away_or_at_its_deadline() -> None:
    async def body(store: Store, hub: Hub, fanout: Fanout) -> None:
        store.commit(1)
        leaving, timed = Client(), Client()
        tasks = [serve(fanout, leaving), serve(fanout, timed, deadline_s=0.2)]
        await wait_until(lambda: fanout.streams == 2, 5, "both streams open")
        leaving.gone.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert leaving.ended and timed.ended and fanout.streams == 0
        assert ids(timed.body) == ["1"]

    run(body)
