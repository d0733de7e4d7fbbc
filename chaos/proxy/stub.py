"""What a toxic sees of the link it runs in: an input channel, an outlet, a clock.

This is the Python counterpart of Toxiproxy's ``ToxicStub``. A toxic's
``pipe(stub)`` coroutine pulls items with :meth:`Stub.recv`, waits with
:meth:`Stub.sleep_until`, and pushes with :meth:`Stub.send`; every wait goes
through the injected :class:`~progressbench.chaos.proxy.types.Clock`, so unit tests drive a
toxic with a fake clock and no sockets.

Interruption: :meth:`Stub.interrupt` makes the pending (or next) ``recv`` /
``sleep`` raise :class:`~progressbench.chaos.proxy.types.Interrupted`. The proxy does this to
swap a toxic on a live connection; the stage is then restarted with a fresh
stub on the same input channel, so queued chunks are never lost.

Channels are unbounded deques; memory is bounded per link by a
:class:`Backlog`, which stops reading the source socket while too many bytes
sit inside the chain (TCP flow control then pushes back on the sender).
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections import deque
from collections.abc import Callable
from typing import Final, Literal, NoReturn

from progressbench.chaos.proxy.types import Chunk, Clock, Interrupted, Item, LinkControl, Outlet


class Signal(enum.Enum):
    """Why a wait ended; only ``TIMEOUT`` ever reaches a toxic."""

    TIMEOUT = "timeout"
    WAKE = "wake"
    INTERRUPT = "interrupt"


TIMEOUT: Final = Signal.TIMEOUT
"""Returned by :meth:`Stub.recv_until` when the deadline passed with no input."""

_WAKE: Final = Signal.WAKE
_INTERRUPT: Final = Signal.INTERRUPT

BACKLOG_HIGH = 1 << 20
"""Bytes queued in one link's chain above which its source socket stops being read."""
BACKLOG_LOW = 256 << 10
"""Bytes queued below which reading resumes."""


class Backlog:
    """Counts the bytes queued in one link's channels; calls back when crossing the marks."""

    __slots__ = ("_high", "_low", "_on_high", "_on_low", "over", "size")

    def __init__(
        self,
        on_high: Callable[[], None],
        on_low: Callable[[], None],
        *,
        high: int = BACKLOG_HIGH,
        low: int = BACKLOG_LOW,
    ) -> None:
        self.size = 0
        self.over = False
        self._high = high
        self._low = low
        self._on_high = on_high
        self._on_low = on_low

    def add(self, n: int) -> None:
        self.size += n
        if not self.over and self.size > self._high:
            self.over = True
            self._on_high()

    def sub(self, n: int) -> None:
        self.size -= n
        if self.over and self.size <= self._low:
            self.over = False
            self._on_low()


class Channel:
    """A FIFO of items between two stages; the consumer may wait on it.

    A closed channel drops whatever is put into it (the stage that read it
    has finished and sent end-of-stream on).
    """

    __slots__ = ("_backlog", "_closed", "_items", "_waiter")

    def __init__(self, backlog: Backlog | None = None) -> None:
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[Signal] | None = None
        self._backlog = backlog
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: Item) -> None:
        if self._closed:
            return
        self._items.append(item)
        if item is not None and self._backlog is not None:
            self._backlog.add(len(item.data))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(_WAKE)

    def push_front(self, item: Item) -> None:
        """Give an item back so that it is the next one read (used on interruption)."""
        if self._closed:
            return
        self._items.appendleft(item)
        if item is not None and self._backlog is not None:
            self._backlog.add(len(item.data))

    def pop(self) -> Item:
        item = self._items.popleft()
        if item is not None and self._backlog is not None:
            self._backlog.sub(len(item.data))
        return item

    def drain(self) -> list[Item]:
        """Take every queued item, oldest first."""
        items = []
        while self._items:
            items.append(self.pop())
        return items

    def close(self) -> None:
        """Drop what is queued and everything put later."""
        self.drain()
        self._closed = True

    def watch(self, waiter: asyncio.Future[Signal] | None) -> None:
        self._waiter = waiter


class Stub:
    """One run of one toxic on one link (a fresh stub per start/restart)."""

    __slots__ = (
        "_interrupted",
        "_waiter",
        "clock",
        "closed",
        "control",
        "input",
        "output",
        "rng",
        "state",
    )

    def __init__(
        self,
        input: Channel,
        output: Outlet,
        *,
        clock: Clock,
        rng: random.Random,
        control: LinkControl,
        state: object = None,
    ) -> None:
        self.input = input
        self.output = output
        self.clock = clock
        self.rng = rng
        self.control = control
        self.state = state
        self.closed = False
        self._interrupted = False
        self._waiter: asyncio.Future[Signal] | None = None

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    def interrupt(self) -> None:
        """Make the toxic's current or next wait raise :class:`Interrupted`."""
        self._interrupted = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(_INTERRUPT)

    # -- reading ------------------------------------------------------------

    async def recv(self) -> Item:
        """The next chunk, or ``None`` at end-of-stream."""
        while True:
            if self._interrupted:
                raise Interrupted
            if self.input:
                return self.input.pop()
            await self._wait(None, watch_input=True)

    async def recv_until(self, deadline: float | None) -> Item | Literal[Signal.TIMEOUT]:
        """Like :meth:`recv`, but :data:`TIMEOUT` if nothing arrives by ``deadline``."""
        while True:
            if self._interrupted:
                raise Interrupted
            if self.input:
                return self.input.pop()
            if deadline is not None and self.clock.now() >= deadline:
                return TIMEOUT
            await self._wait(deadline, watch_input=True)

    # -- waiting ------------------------------------------------------------

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the clock reaches ``deadline`` (interruptible)."""
        if self._interrupted:
            raise Interrupted
        while self.clock.now() < deadline:
            await self._wait(deadline, watch_input=False)
            if self._interrupted:
                raise Interrupted

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the clock (interruptible); zero or less returns at once."""
        if seconds > 0:
            await self.sleep_until(self.clock.now() + seconds)
        elif self._interrupted:
            raise Interrupted

    async def sleep_uninterruptibly(self, seconds: float) -> None:
        """Wait ``seconds`` ignoring interrupts (``reset_peer`` does, like Toxiproxy)."""
        if seconds <= 0:
            return
        future: asyncio.Future[Signal] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(_WAKE)

        handle = self.clock.call_at(self.clock.now() + seconds, wake)
        try:
            await future
        finally:
            handle.cancel()

    async def wait_interrupt(self) -> NoReturn:
        """Hold everything (read nothing) until interrupted."""
        while True:
            if self._interrupted:
                raise Interrupted
            await self._wait(None, watch_input=False)

    # -- writing ------------------------------------------------------------

    def send(self, chunk: Chunk) -> None:
        """Pass a chunk on (empty chunks are skipped)."""
        if chunk.data:
            self.output.put(chunk)

    def close(self) -> None:
        """Send end-of-stream on and finish this stage for good (its input is dropped)."""
        if not self.closed:
            self.closed = True
            self.output.put(None)
            self.input.close()

    # -- internals ----------------------------------------------------------

    async def _wait(self, deadline: float | None, *, watch_input: bool) -> Signal:
        future: asyncio.Future[Signal] = asyncio.get_running_loop().create_future()
        self._waiter = future
        handle = None
        if deadline is not None:

            def expire() -> None:
                if not future.done():
                    future.set_result(TIMEOUT)

            handle = self.clock.call_at(deadline, expire)
        if watch_input:
            self.input.watch(future)
        try:
            return await future
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()
            if watch_input:
                self.input.watch(None)
