"""One direction of one connection: source socket → chain of toxic stages → sink.

With no toxic in its chain a link writes each read straight into the
destination transport (the fast path: one ``transport.write`` per read, with
backpressure through ``pause_writing``). With toxics, each read becomes a
:class:`~progressbench.chaos.proxy.types.Chunk` that travels through one
:class:`Stage` per toxic, each stage a task running the toxic's ``pipe``.

Chain edits on a live link follow Toxiproxy's ``link.go``:

* **add** interrupts the last stage (it releases what it holds), points it
  at the new stage's input and restarts both;
* **update** interrupts the stage and restarts it with the new attributes
  (and a new toxicity roll); per-connection state survives;
* **remove** interrupts the stage, runs the toxic's cleanup (``timeout``
  closes the connection), interrupts the previous stage, passes everything
  still queued at the removed stage's input on, relinks and restarts the
  previous stage.

Edits of one proxy are serialized by the proxy, so at most one edit runs on
a link at a time; a link that is silenced or finished ignores edits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Protocol

from progressbench.chaos.proxy.endpoint import BACKLOG, Endpoint
from progressbench.chaos.proxy.stub import Backlog, Channel, Stub
from progressbench.chaos.proxy.toxics import NOOP, CleanupToxic, Toxic
from progressbench.chaos.proxy.types import Chunk, Clock, Direction, Interrupted, Item, Outlet

if TYPE_CHECKING:
    from progressbench.chaos.proxy.entry import ToxicEntry

log = logging.getLogger(__name__)


class LinkHost(Protocol):
    """What a link needs from its connection."""

    clock: Clock
    rng: random.Random

    @property
    def finished(self) -> bool: ...

    def roll(self, entry: ToxicEntry) -> bool:
        """Whether ``entry`` is active for this (re)start of its stage."""

    def state_for(self, entry: ToxicEntry) -> object:
        """The per-connection state of ``entry`` (shared by both links if it spans both)."""

    def silence(self) -> None: ...


class Sink:
    """The tail of a link: writes into the destination; end-of-stream closes it."""

    __slots__ = ("dest", "enabled", "sent")

    def __init__(self, dest: Endpoint) -> None:
        self.dest = dest
        self.sent = 0
        self.enabled = True

    def put(self, item: Item) -> None:
        if item is None:
            self.close()
        else:
            self.write(item.data)

    def write(self, data: bytes) -> None:
        if self.enabled and self.dest.write(data):
            self.sent += len(data)

    def close(self) -> None:
        if self.enabled:
            self.enabled = False
            self.dest.close()


class _Discard:
    """The outlet of a silenced link: everything vanishes."""

    def put(self, item: Item) -> None:
        pass


DISCARD = _Discard()


class Stage:
    """One toxic's place in one link: input channel, outlet, state and running task."""

    __slots__ = ("closed", "entry", "input", "output", "state", "stub", "task")

    def __init__(self, entry: ToxicEntry, input: Channel, output: Outlet, state: object) -> None:
        self.entry = entry
        self.input = input
        self.output = output
        self.state = state
        self.stub: Stub | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self, link: Link) -> None:
        toxic = self.entry.toxic if link.host.roll(self.entry) else NOOP
        stub = Stub(
            self.input,
            self.output,
            clock=link.host.clock,
            rng=link.host.rng,
            control=link,
            state=self.state,
        )
        self.stub = stub
        self.task = asyncio.get_running_loop().create_task(self._run(toxic, stub))

    async def _run(self, toxic: Toxic, stub: Stub) -> None:
        try:
            await toxic.pipe(stub)
        except Interrupted:
            pass
        except Exception:
            log.exception("toxic %r failed; closing its stream", self.entry.name)
            stub.close()
        if stub.closed:
            self.closed = True

    async def interrupt(self) -> None:
        """Stop the running toxic and wait until it has released what it held."""
        task = self.task
        if task is None or task.done():
            return
        assert self.stub is not None
        self.stub.interrupt()
        await asyncio.wait({task})

    def cancel(self) -> asyncio.Task[None] | None:
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            return task
        return None


class Link:
    """One direction of a connection.

    Implements :class:`~progressbench.chaos.proxy.types.LinkControl` for its
    toxics, and :class:`~progressbench.chaos.proxy.types.Inbound` and
    :class:`~progressbench.chaos.proxy.types.SourceGate` for its two endpoints.
    """

    def __init__(self, host: LinkHost, direction: Direction, source: Endpoint, dest: Endpoint) -> None:
        self.host = host
        self.direction = direction
        self.source = source
        self.sink = Sink(dest)
        self.backlog = Backlog(lambda: source.hold(BACKLOG), lambda: source.release(BACKLOG))
        self.stages: list[Stage] = []
        self.head: Outlet = self.sink
        self.received = 0
        self.ended = False
        self.silenced = False
        source.inbound = self
        dest.outbound = self

    # -- data path ----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        head = self.head
        if head is self.sink:
            self.sink.write(data)
        else:
            head.put(Chunk(data, self.host.clock.now()))

    def feed_eof(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.silenced:
            # Nothing may reach the other peer; just release our own socket.
            self.source.close()
        else:
            self.head.put(None)

    # -- LinkControl ----------------------------------------------------------

    def hold_source(self, key: object) -> None:
        self.source.hold(key)

    def release_source(self, key: object) -> None:
        self.source.release(key)

    def silence(self) -> None:
        self.host.silence()

    # -- chain ------------------------------------------------------------------

    def build(self, entries: list[ToxicEntry]) -> None:
        """Set up the initial chain of a new connection (before any byte is read)."""
        outlet: Outlet = self.sink
        for entry in reversed(entries):
            stage = Stage(entry, Channel(self.backlog), outlet, self.host.state_for(entry))
            self.stages.insert(0, stage)
            outlet = stage.input
        self.head = outlet
        for stage in self.stages:
            stage.start(self)

    @property
    def editable(self) -> bool:
        return not self.silenced and not self.host.finished

    def _find(self, entry: ToxicEntry) -> Stage | None:
        for stage in self.stages:
            if stage.entry is entry:
                return stage
        return None

    async def add(self, entry: ToxicEntry) -> None:
        if not self.editable:
            return
        state = self.host.state_for(entry)
        if not self.stages:
            stage = Stage(entry, Channel(self.backlog), self.sink, state)
            self.stages.append(stage)
            self.head = stage.input
            stage.start(self)
            return
        last = self.stages[-1]
        await last.interrupt()
        if not self.editable:
            return
        stage = Stage(entry, Channel(self.backlog), last.output, state)
        self.stages.append(stage)
        if last.closed:
            # The stream already ended here; the new stage can never see data.
            stage.closed = True
            stage.input.close()
            return
        last.output = stage.input
        stage.start(self)
        last.start(self)

    async def update(self, entry: ToxicEntry) -> None:
        stage = self._find(entry)
        if stage is None or stage.closed or not self.editable:
            return
        await stage.interrupt()
        if not stage.closed and self.editable:
            stage.start(self)

    async def remove(self, entry: ToxicEntry) -> None:
        stage = self._find(entry)
        if stage is None or not self.editable:
            return
        if not stage.closed:
            await stage.interrupt()
            if isinstance(entry.toxic, CleanupToxic) and stage.stub is not None:
                entry.toxic.cleanup(stage.stub)
                if stage.stub.closed:
                    stage.closed = True
        index = self.stages.index(stage)
        prev = self.stages[index - 1] if index > 0 else None
        if prev is not None and not prev.closed:
            await prev.interrupt()
        if not self.editable:
            return
        index = self.stages.index(stage)
        if stage.closed:
            # End-of-stream already went past this stage; leave the inputs
            # pointing at its closed channel, which drops what arrives.
            self.stages.pop(index)
            if prev is not None and not prev.closed:
                prev.start(self)
            return
        for item in stage.input.drain():
            stage.output.put(item)
        self.stages.pop(index)
        if prev is None:
            self.head = stage.output
        else:
            prev.output = stage.output
            if not prev.closed:
                prev.start(self)

    # -- teardown ---------------------------------------------------------------

    def stop(self) -> list[asyncio.Task[None]]:
        """Cancel every stage and drop queued data; return the tasks being cancelled."""
        cancelled = []
        for stage in self.stages:
            task = stage.cancel()
            if task is not None:
                cancelled.append(task)
            stage.input.close()
        self.stages = []
        self.head = DISCARD
        return cancelled

    def go_silent(self) -> list[asyncio.Task[None]]:
        """Blackhole for good: drop everything, keep reading only to notice closes."""
        self.silenced = True
        tasks = self.stop()
        self.sink.enabled = False
        self.source.release_all()
        return tasks
