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
``RESUME``      ``<transport> resume``           disconnect → next event received     no
``RESUME``      ``<transport> silent gap``       0                                   yes
``DISCONNECT``  ``<transport> disconnect``       0                                   no
==============  ===============================  ==================================  ========

A resume's time here is what the phone itself can tell: from noticing the
drop to the next event it received (our report's ``resume_ms`` starts at the
end of the fault window, which only the harness knows). Every event is
received once per entry (repeats on the wire are not new
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

from progressbench.core.events import Observation
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


def outage_ms(observations: Sequence[Observation]) -> list[float]:
    """For each drop the phone noticed, milliseconds until the next event it received (if any)."""
    ordered = sorted(observations, key=lambda o: o.mono_ns)
    times: list[float] = []
    for i, o in enumerate(ordered):
        if o.type != "disconnected":
            continue
        following = (n for n in ordered[i + 1 :] if n.type == "progress")
        if (news := next(following, None)) is not None:
            times.append((news.mono_ns - o.mono_ns) / 1e6)
    return times


def phone_requests(
    row: SessionRow, events: Sequence[EventRow], observations: Sequence[Observation] = ()
) -> list[PhoneRequest]:
    """The entries of one scored session (see the module's table); ``observations`` time the resumes."""
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
    out += [PhoneRequest("RESUME", f"{t} resume", ms) for ms in outage_ms(observations)]
    out += [
        PhoneRequest("RESUME", f"{t} silent gap", 0.0, "a reconnect lost events without a signal")
        for _ in range(row.resume_silent_gap)
    ]
    out += [PhoneRequest("DISCONNECT", f"{t} disconnect", 0.0) for _ in range(row.disconnects)]
    return out
