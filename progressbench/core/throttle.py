"""CPU of an instance with request-based billing, as its background work sees it.

Cloud Run's request-based billing allocates CPU to an instance "only during
request processing" and scales an instance that receives no request for its
idle period to zero (up to 15 minutes; the price table's ``idle_tail_s``).
The Cloud Run article (seeds/003) runs a long job as a background task of the
instance that accepted it and relies on the client's polls ("that's also
making sure the instance is up"). This policy says what such a job may do at
an instant, from what the instance's metering knows about its requests:

* ``run`` — a request is in flight, or one ended less than ``grant_s`` ago
  (the testbed's polls last milliseconds; each buys the work a short window
  of CPU, an ASSUMPTION stated in :class:`~progressbench.core.config.Timing`);
* ``wait`` — throttled: no request, the work makes no progress;
* ``reaped`` — no request for ``idle_s``: the instance is gone, and the job
  with it, unfinished.

Pure (no clock of its own, no I/O), so it is tested with plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Cpu = Literal["run", "wait", "reaped"]

#: Execution-context kinds whose CPU the platform throttles outside requests: a job of such a
#: kind runs slower than its plan by design, so its pace says nothing about the host's (the
#: saturation guard leaves it out).
THROTTLED_KINDS = frozenset({"instance-background"})


def throttled(context: str) -> bool:
    """True for a ``"<service>/<kind>"`` execution context whose kind is throttled."""
    return context.rpartition("/")[2] in THROTTLED_KINDS


@dataclass(frozen=True)
class RequestCpu:
    """What background work on a request-billed instance may do (all times in scaled seconds)."""

    grant_s: float
    idle_s: float

    @property
    def tick_s(self) -> float:
        """How often the work looks again: a fifth of the grant, so a slice overshoots it little."""
        return max(self.grant_s / 5, 0.001)

    def decide(self, in_flight: int, last_request_end: float | None, started: float, now: float) -> Cpu:
        """``run``, ``wait`` or ``reaped`` at ``now`` (monotonic).

        ``last_request_end`` is when the instance's last request ended (None:
        none ended yet; ``started``, when the job started inside the request
        that accepted it, stands in).
        """
        if in_flight > 0:
            return "run"
        quiet = now - max(last_request_end if last_request_end is not None else started, started)
        if quiet < self.grant_s:
            return "run"
        if quiet >= self.idle_s:
            return "reaped"
        return "wait"
