"""What the polling server remembers of each job's state: its ETag, so an unchanged job's poll is a 304
answered from memory, without touching the database.

A status poll that comes with ``If-None-Match`` asks "has anything changed?".
The answer is in the store, but the store announces every change of a job
(each committed event and each status change without one, ``pg_notify``), so
a process that listens can remember the ETag it last computed per job and
forget it the moment the job changes. The cache is trusted only while
nothing can have been missed:

* an entry is stored only if no change of that job, and no gap in the feed,
  was seen between the moment its database read began and the moment it is
  stored (the read may predate a change whose notice already arrived);
* a gap in the feed (the listener reconnecting) forgets everything.

Pure bookkeeping (no I/O): the server calls :meth:`changed`/:meth:`missed`
from the notify hub, and :meth:`ticket`/:meth:`put`/:meth:`match` around
its reads. Bounded: the least recently stored entries go first.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

#: Jobs remembered at most (a few hundred bytes each).
MAX_ENTRIES = 50_000


@dataclass(frozen=True, slots=True)
class Entry:
    owner: str
    etag: str
    terminal: bool


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before a database read: the feed's epoch and the job's version at that moment."""

    job_id: uuid.UUID
    epoch: int
    version: int


class EtagCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[uuid.UUID, Entry] = OrderedDict()
        self._versions: dict[uuid.UUID, int] = {}
        self._epoch = 0
        self._live = False
        self._max = max_entries
        self.hits = 0

    # ---------------------------------------------------------------- the feed's side

    def changed(self, job_id: uuid.UUID) -> None:
        self._entries.pop(job_id, None)
        if job_id in self._versions or len(self._versions) < self._max:
            self._versions[job_id] = self._versions.get(job_id, 0) + 1
        else:
            self.missed()  # no room to track this job's version: trust nothing stored before

    def missed(self) -> None:
        self._entries.clear()
        self._versions.clear()
        self._epoch += 1

    def live(self, listening: bool) -> None:
        """Whether the feed is connected now; while it is not, nothing is stored or answered."""
        if not listening and self._live:
            self.missed()
        self._live = listening

    # ---------------------------------------------------------------- the reader's side

    def ticket(self, job_id: uuid.UUID) -> Ticket:
        return Ticket(job_id, self._epoch, self._versions.get(job_id, 0))

    def put(self, ticket: Ticket, owner: str, etag: str, terminal: bool) -> bool:
        """Remember the ETag a read computed, unless the job or the feed moved since its ticket."""
        if not self._live or ticket.epoch != self._epoch:
            return False
        if self._versions.get(ticket.job_id, 0) != ticket.version:
            return False
        self._entries[ticket.job_id] = Entry(owner, etag, terminal)
        self._entries.move_to_end(ticket.job_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return True

    def match(self, job_id: uuid.UUID, owner: str, if_none_match: str | None) -> Entry | None:
        """The remembered entry when the client's ETag is still current and the reader owns the job."""
        if not self._live or if_none_match is None:
            return None
        entry = self._entries.get(job_id)
        if entry is None or entry.owner != owner or entry.etag != if_none_match:
            return None
        self.hits += 1
        return entry
