"""What one phone session looked like, as requests for Locust's statistics, live charts and CSV.

Locust counts requests; a phone watching a job makes one ``POST`` and then
*receives*. So that Locust's own UI, CSV and HTML report show what the
phones lived through, each scored session becomes a list of
:class:`PhoneRequest` entries that the Locust side fires into
``environment.events.request``:

==============  ===============================  ==================================  ========
request type    name                             response time                       failure
==============  ===============================  ==================================  ========
``EVENT``       ``<transport> <kind>``           commit → phone latency              no
``EVENT``       ``<transport> foreign``          commit → phone latency (0: unknown)  yes
``LOST``        ``<transport> lost event``       0                                   yes
``STALL``       ``<transport> silent stall``     the longest silence                 yes
``RESUME``      ``<transport> resume``           network back → first news           no
``RESUME``      ``<transport> silent gap``       0                                   yes
``DISCONNECT``  ``<transport> disconnect``       0                                   no
==============  ===============================  ==================================  ========

Every event is received once per entry (repeats on the wire are not new
events); a lost event is one the store committed for the phone's job and
the phone never received (``lost`` of RESULTS.md). The scoring is the
ledger's, against the store's ground truth, so an entry exists only once
the session is over and its job's commits are known: Locust's charts move
as sessions end, not per event. Response times are milliseconds of the run's
own clock (the ``_raw`` values), like Locust's ``JOB`` entry and its
requests per second; our report divides them by the time scale (real-time
equivalents), so at ``--time-scale 0.05`` Locust's 50 ms is our 1,000 ms.

Pure: a scored session in, entries out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from progressbench.core.ledger import EventRow, SessionRow


@dataclass(frozen=True, slots=True)
class PhoneRequest:
    request_type: str
    name: str
    response_time: float
    #: None: a success; otherwise why it failed (Locust groups failures by this text).
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def phone_requests(row: SessionRow, events: Sequence[EventRow]) -> list[PhoneRequest]:
    """The entries of one scored session (see the module's table)."""
    t = row.transport
    out: list[PhoneRequest] = []
    for e in events:
        if e.duplicate:
            continue
        latency = max(e.latency_ms_raw or 0.0, 0.0)
        if e.foreign:
            out.append(
                PhoneRequest("EVENT", f"{t} foreign", latency, "an event of a job the phone does not own")
            )
        else:
            out.append(PhoneRequest("EVENT", f"{t} {e.kind}", latency))
    out += [
        PhoneRequest("LOST", f"{t} lost event", 0.0, "committed, never received")
        for _ in range(max(row.lost, 0))
    ]
    if row.silent_stall:
        out.append(
            PhoneRequest(
                "STALL",
                f"{t} silent stall",
                row.longest_silence_ms_raw,
                "no event and no error while the job ran",
            )
        )
    out += [PhoneRequest("RESUME", f"{t} resume", ms) for ms in row.resume_ms_raw]
    out += [
        PhoneRequest("RESUME", f"{t} silent gap", 0.0, "a reconnect lost events without a signal")
        for _ in range(row.resume_silent_gap)
    ]
    out += [PhoneRequest("DISCONNECT", f"{t} disconnect", 0.0) for _ in range(row.disconnects)]
    return out
