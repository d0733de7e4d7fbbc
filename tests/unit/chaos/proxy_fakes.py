"""Fakes for driving toxics and links without sockets or real time.

``FakeClock`` is a :class:`progressbench.chaos.proxy.types.Clock` whose time only moves
when a test calls ``advance``; timers fire in order, and the event loop is
given a few turns after each so that the toxic coroutines react. Nothing
here sleeps for real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable

from progressbench.chaos.proxy.stub import Channel, Stub
from progressbench.chaos.proxy.toxics import StatefulToxic, Toxic
from progressbench.chaos.proxy.types import Chunk, Interrupted, Item


async def settle(turns: int = 20) -> None:
    """Let every ready coroutine run until it blocks again."""
    for _ in range(turns):
        await asyncio.sleep(0)


class FakeTimer:
    def __init__(self, when: float, seq: int, callback: Callable[[], object]) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: FakeTimer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._timers: list[FakeTimer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(when, next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def advance(self, seconds: float) -> None:
        """Move time forward, firing due timers in order and letting tasks react."""
        target = self.t + seconds
        await settle()
        while self._timers and self._timers[0].when <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.t = max(self.t, timer.when)
            timer.callback()
            await settle()
        self.t = target
        await settle()


class Recorder:
    """An outlet that remembers what arrived and when."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.items: list[tuple[float, Item]] = []

    def put(self, item: Item) -> None:
        self.items.append((self.clock.now(), item))

    @property
    def data(self) -> bytes:
        return b"".join(item.data for _, item in self.items if item is not None)

    @property
    def closed(self) -> bool:
        return any(item is None for _, item in self.items)

    def times(self) -> list[float]:
        return [round(t, 6) for t, item in self.items if item is not None]


class FakeControl:
    def __init__(self) -> None:
        self.holds: set[object] = set()
        self.silenced = False

    def hold_source(self, key: object) -> None:
        self.holds.add(key)

    def release_source(self, key: object) -> None:
        self.holds.discard(key)

    def silence(self) -> None:
        self.silenced = True


class Harness:
    """One toxic running on a channel, with a fake clock, recorder and control."""

    def __init__(self, toxic: Toxic, clock: FakeClock, *, seed: int = 7, state: object = None):
        self.toxic = toxic
        self.clock = clock
        self.input = Channel()
        self.out = Recorder(clock)
        self.control = FakeControl()
        self.rng = random.Random(seed)
        if state is None and isinstance(toxic, StatefulToxic):
            state = toxic.new_state()
        self.state = state
        self.interrupted = False
        self.stub: Stub
        self.task: asyncio.Task[None]
        self.start()

    def start(self, toxic: Toxic | None = None) -> None:
        """(Re)start the toxic on the same channel and state, like a stage restart."""
        if toxic is not None:
            self.toxic = toxic
        self.stub = Stub(
            self.input,
            self.out,
            clock=self.clock,
            rng=self.rng,
            control=self.control,
            state=self.state,
        )
        self.task = asyncio.get_running_loop().create_task(self._run(self.toxic, self.stub))

    async def _run(self, toxic: Toxic, stub: Stub) -> None:
        try:
            await toxic.pipe(stub)
        except Interrupted:
            self.interrupted = True

    def feed(self, data: bytes, at: float | None = None) -> None:
        self.input.put(Chunk(data, self.clock.now() if at is None else at))

    def eof(self) -> None:
        self.input.put(None)

    async def interrupt(self) -> None:
        self.stub.interrupt()
        await settle()

    @property
    def done(self) -> bool:
        return self.task.done()


class FakeEndpoint:
    """Stands in for :class:`progressbench.chaos.proxy.endpoint.Endpoint` (no socket)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.holds: set[object] = set()
        self.inbound: object = None
        self.outbound: object = None

    def hold(self, key: object) -> None:
        self.holds.add(key)

    def release(self, key: object) -> None:
        self.holds.discard(key)

    def release_all(self) -> None:
        self.holds.clear()

    def write(self, data: bytes) -> bool:
        if self.closed:
            return False
        self.written += data
        return True

    def close(self) -> None:
        self.closed = True


class FakeHost:
    """Stands in for a connection as a link's host."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rng = random.Random(5)
        self.finished = False
        self.silenced = False

    def roll(self, entry: object) -> bool:
        return True

    def state_for(self, entry: ToxicEntryLike) -> object:
        toxic = entry.toxic
        return toxic.new_state() if isinstance(toxic, StatefulToxic) else None

    def silence(self) -> None:
        self.silenced = True


class ToxicEntryLike:
    toxic: Toxic
