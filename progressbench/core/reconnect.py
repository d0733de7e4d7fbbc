"""What a watcher remembers across reconnects, sans I/O: one state machine for every transport.

Every watcher does the same bookkeeping whatever its wire: it notices a
drop, waits a back-off, tries again, and once it is back it tells the ledger
(``Disconnected`` … ``Reconnected`` + ``Resumed``) and asks its server for
what it missed after a cursor. What differs between transports is data:

* a :class:`Backoff` — how long to wait before retry *n*;
* a :class:`ResumePolicy` — which seq the resume asks after (the highest seen
  for ``Last-Event-ID`` and a poll cursor, the contiguous prefix for a
  snapshot or a refetch, none for a restart), whether a seq that comes twice
  is shown twice, and whether ``Resumed`` waits for the driver to say the
  feed is live again.

:class:`Reconnector` holds the state: values in (``up(now)``,
``dropped(reason, now)``, ``receive(progress)``), events out. It owns no
clock and no socket; the watcher (an I/O driver) passes the time in and
yields what comes back. Every progress event goes through
:meth:`Reconnector.receive`, which answers with a :class:`Receipt`: the
dedupe decision is data on the receipt and on its event (``shown``, with the
delivery ``path``), and drivers report every receipt, duplicates included:
the ledger counts repeats on the wire apart from repeats on the screen.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from progressbench.core.events import (
    TERMINAL,
    ClientEvent,
    Connected,
    DeliveryPath,
    Disconnected,
    Progress,
    Reconnected,
    Resumed,
)

#: Draws a float in ``[low, high]`` (``random.uniform``; tests pass their own).
Draw = Callable[[float, float], float]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``n``: ``initial × factor^(n-1)``, capped, floored, then jittered.

    Retry 0 is the first attempt and waits nothing. ``jitter`` spreads a
    delay over ``[(1 - jitter) × d, d]`` (full jitter below the computed
    delay, never above it), so the ceiling is a hard bound; ``floor`` applies
    before the jitter. ``factor=1`` and ``ceiling=initial`` is a fixed delay
    (``EventSource``'s ``retry:``).
    """

    initial: float
    ceiling: float
    factor: float = 2.0
    jitter: float = 0.0
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.ceiling < 0 or self.floor < 0:
            raise ValueError(f"back-off durations must be >= 0: {self}")
        if self.factor < 1.0:
            raise ValueError(f"back-off factor must be >= 1, got {self.factor}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"back-off jitter must be within [0, 1], got {self.jitter}")

    def delay(self, retry: int, draw: Draw = random.uniform) -> float:
        if retry <= 0:
            return 0.0
        growth = self.factor ** min(retry - 1, 64)  # past 2^64 every sane ceiling has won
        base = max(min(self.initial * growth, self.ceiling), self.floor)
        if self.jitter:
            base *= draw(1.0 - self.jitter, 1.0)
        return float(base)


@dataclass(frozen=True, slots=True)
class ResumePolicy:
    """How one transport catches up after a drop; data, not a copy of the loop.

    ``cursor`` is which seq the resume continues after: ``"highest"`` (the
    server replays or answers strictly after it: ``Last-Event-ID``, a poll's
    ``after=``), ``"contiguous"`` (the highest seq with every seq up to it
    seen: a snapshot or refetch then refills holes a lost live message left),
    or ``None`` (nothing can be resumed: the client starts over and no
    ``Resumed`` is reported). ``dedupe`` shows each seq once when the
    transport may deliver one twice by design (live + snapshot overlap).
    ``deferred`` holds ``Resumed`` back until the driver calls
    :meth:`Reconnector.resume` (the feed is live again only after a later
    signal, e.g. Realtime's "Subscribed to PostgreSQL"). With
    ``silent_until_connected`` the job exists only once a connection stands
    (a restart-only transport creates it on the stream): failures before
    that are failed submissions, not drops, and are not reported.
    """

    name: str
    cursor: Literal["highest", "contiguous"] | None
    dedupe: bool = False
    deferred: bool = False
    silent_until_connected: bool = False


LAST_EVENT_ID = ResumePolicy("last-event-id", cursor="highest")
POLL_CURSOR = ResumePolicy("cursor", cursor="highest")
SNAPSHOT = ResumePolicy("snapshot", cursor="contiguous", dedupe=True)
REFETCH = ResumePolicy("refetch", cursor="contiguous", dedupe=True, deferred=True)
RESTART = ResumePolicy("restart", cursor=None, silent_until_connected=True)


@dataclass(slots=True)
class SeqBook:
    """Which seqs arrived: a contiguous prefix, the seqs seen above it, and the highest.

    Seqs start at 1. ``contiguous`` is the highest seq with every seq up to
    it seen; asking for ``after=contiguous`` refills a hole, where
    ``after=highest`` would skip it.
    """

    contiguous: int = 0
    highest: int = 0
    #: Seqs seen above ``contiguous``; None while there are none (events mostly arrive in order,
    #: and an empty set is ~200 bytes a phone holds for its whole session).
    above: set[int] | None = None

    def add(self, seq: int) -> bool:
        """Record ``seq``; True when it is new."""
        if self.seen(seq):
            return False
        self.highest = max(self.highest, seq)
        if seq == self.contiguous + 1 and not self.above:
            self.contiguous = seq  # in order: the common case, no set at all
            return True
        above = self.above if self.above is not None else set()
        above.add(seq)
        while self.contiguous + 1 in above:
            self.contiguous += 1
            above.discard(self.contiguous)
        self.above = above or None
        return True

    def seen(self, seq: int) -> bool:
        return seq <= self.contiguous or (self.above is not None and seq in self.above)

    def has_gap_before(self, seq: int) -> bool:
        """True when some seq below ``seq`` has not been seen."""
        return seq > self.contiguous + 1

    def missing_before(self, seq: int) -> bool:
        """``seq`` is new and would be shown ahead of a seq that has not arrived."""
        return not self.seen(seq) and self.has_gap_before(seq)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One progress event as it arrived, and what the policy decided about it."""

    event: Progress
    duplicate: bool
    shown: bool

    @property
    def finishes(self) -> bool:
        """The terminal event, shown: the watch is over."""
        return self.shown and self.event.kind in TERMINAL


class Reconnector:
    """A watcher's connection and resume state; events out, no I/O.

    Invariants: ``Connected`` once, at the first ``up``; per outage exactly
    one ``Disconnected`` (at its first failure) and, when a connection stands
    again, one ``Reconnected(attempt=failures in the outage)`` followed by
    ``Resumed(from_seq=cursor)`` (at once, or at :meth:`resume` when the
    policy is deferred; never for a policy without a cursor).

    ``retry`` counts failures since the connection was last stable and is
    what the driver's :class:`Backoff` is asked about. A connection counts as
    stable once it stayed up ``stable_after_s`` (0: any connection that
    stood; partysocket resets only after 5 s up, so a socket that flaps keeps
    growing its delay).
    """

    # A phone holds one for its stream's whole life (10,000 per load process): no instance dict.
    __slots__ = (
        "book",
        "connected",
        "down_attempts",
        "final",
        "policy",
        "resume_due",
        "retry",
        "stable_after_s",
        "up_since",
    )

    def __init__(self, policy: ResumePolicy, *, stable_after_s: float = 0.0) -> None:
        self.policy = policy
        self.stable_after_s = stable_after_s
        self.book = SeqBook()
        self.connected = False
        self.down_attempts = 0
        self.retry = 0
        self.up_since: float | None = None
        self.resume_due = False
        #: The terminal event, once one was shown: the watch is over when the driver has yielded it.
        self.final: Progress | None = None

    @property
    def finished(self) -> bool:
        return self.final is not None

    @property
    def is_down(self) -> bool:
        return self.down_attempts > 0

    @property
    def cursor(self) -> int:
        """The seq a resume (or the next read) continues after."""
        if self.policy.cursor == "contiguous":
            return self.book.contiguous
        if self.policy.cursor == "highest":
            return self.book.highest
        return 0

    def up(self, now: float) -> list[ClientEvent]:
        """A connection stands (a stream answered, a socket opened, a poll came back)."""
        events: list[ClientEvent] = []
        if self.up_since is None:
            self.up_since = now
        if not self.connected:
            self.connected = True
            events.append(Connected())
        if self.down_attempts:
            events.append(Reconnected(attempt=self.down_attempts))
            self.down_attempts = 0
            if self.policy.cursor is not None:
                self.resume_due = True
                if not self.policy.deferred:
                    events.extend(self.resume())
        return events

    def dropped(self, reason: str, now: float) -> list[ClientEvent]:
        """The connection, or an attempt to make one, failed."""
        if self.up_since is not None and now - self.up_since >= self.stable_after_s:
            self.retry = 0
        self.up_since = None
        self.retry += 1
        if self.policy.silent_until_connected and not self.connected:
            return []
        self.down_attempts += 1
        return [Disconnected(reason=reason)] if self.down_attempts == 1 else []

    def new_job(self) -> None:
        """The client started over with a new job (a naive re-POST): its seqs begin again at 1."""
        self.book = SeqBook()
        self.final = None

    def resume(self) -> list[ClientEvent]:
        """``Resumed`` if a reconnect is waiting for it; the driver then reads after :attr:`cursor`."""
        if not self.resume_due:
            return []
        self.resume_due = False
        return [Resumed(from_seq=self.cursor)]

    def receive(self, event: Progress, path: DeliveryPath | None = None) -> Receipt:
        """Book one progress event; the receipt says whether it is a duplicate and whether to show it.

        The receipt's event carries that verdict (``shown``) and how it came
        (``path``), so a driver reports *every* receipt: duplicates on the wire
        are measured, not hidden by the client's own dedupe.
        """
        duplicate = not self.book.add(event.seq)
        shown = not (duplicate and self.policy.dedupe)
        if event.shown != shown or (path is not None and path != event.path):
            event = replace(event, shown=shown, path=path or event.path)
        receipt = Receipt(event=event, duplicate=duplicate, shown=shown)
        if receipt.finishes and self.final is None:
            self.final = event
        return receipt

    def show(self, events: Iterable[Progress], path: DeliveryPath | None = None) -> Iterator[Progress]:
        """Every receipt, booked as it is taken (state reads stay in step); ``shown``: the user saw it."""
        for event in events:
            yield self.receive(event, path).event
