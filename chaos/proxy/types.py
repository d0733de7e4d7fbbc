"""The data plane's shared vocabulary: directions, chunks, outlets, clocks, what a link offers.

A *link* carries one direction of one proxied TCP connection. Bytes read
from its source socket become :class:`Chunk` values stamped with the clock
time they were read; they pass through the link's chain of toxics and are
written to the destination socket. ``None`` in place of a chunk means
end-of-stream (the source sent FIN or failed); it travels the same path so
that toxics such as ``slow_close`` can delay it.

Nothing in this module does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Direction(enum.Enum):
    """Toxiproxy's two streams: ``upstream`` is client→server, ``downstream`` server→client."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"

    @classmethod
    def parse(cls, value: str) -> Direction | None:
        """Parse a stream name case-insensitively, as Toxiproxy does; ``None`` if invalid."""
        lowered = value.lower()
        for member in cls:
            if member.value == lowered:
                return member
        return None


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes read from a socket in one read, and the clock time they count from."""

    data: bytes
    time: float

    def with_data(self, data: bytes) -> Chunk:
        """The same timestamp with other bytes (a slice or a cut)."""
        return Chunk(data, self.time)

    def at(self, time: float) -> Chunk:
        """The same bytes re-stamped (a latency toxic moves the stamp forward)."""
        return Chunk(self.data, time)


Item = Chunk | None
"""What flows through a link: a chunk, or ``None`` for end-of-stream."""


class Outlet(Protocol):
    """Where a stage writes: the next toxic's input channel or the link's sink."""

    def put(self, item: Item) -> None:
        """Accept one item without blocking; order is preserved."""


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds plus timers: the event loop's in production, a fake in unit tests."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


class Inbound(Protocol):
    """The link an endpoint reads for: every read, and then end-of-stream, goes in here.

    Endpoints know links only through this and :class:`SourceGate`, so that
    ``endpoint`` sits below ``link`` with no import back up (a contract in
    ``pyproject.toml`` keeps it so).
    """

    def feed(self, data: bytes) -> None: ...

    def feed_eof(self) -> None: ...


class SourceGate(Protocol):
    """Holds on a link's source socket: keyed, reading resumes once no key is held."""

    def hold_source(self, key: object) -> None:
        """Stop reading this link's source socket until :meth:`release_source` with ``key``."""

    def release_source(self, key: object) -> None:
        """Undo :meth:`hold_source` for ``key``; reading resumes when nothing else holds it."""


class LinkControl(SourceGate, Protocol):
    """The few things a toxic may ask of the connection around it (kept off the data path)."""

    def silence(self) -> None:
        """Blackhole the whole connection for good: no byte, FIN or RST leaves it again."""


class Interrupted(Exception):
    """Raised inside a toxic's ``pipe`` when the proxy needs the stage stopped.

    The proxy interrupts a stage to add, update or remove a toxic on a live
    connection (Toxiproxy's ``InterruptToxic``). A toxic that holds a chunk
    should pass it on (``stub.send``) or put it back on its input before
    re-raising, so that nothing is lost.
    """
