"""``blackhole`` (mobile): a tunnel. Bytes stop in BOTH directions; nothing is lost.

While present, the toxic reads nothing: every chunk, and an end-of-stream,
waits in its input channel, in order. No FIN and no RST reach either peer.
When the queued bytes pass the link's backlog mark the proxy stops reading
the source socket, so the sender's socket buffers fill and its writes
block, as over a path that stopped acknowledging. Removing the toxic lets
the queue through in order on the *same* connection: TCP retransmission
surviving a subway tunnel.

Restore with retransmission back-off (``rto_initial`` > 0, ms): real TCP
does not resume the instant the path returns. A sender whose segment went
unacknowledged retransmits after its retransmission timeout, doubling it
each time (RFC 6298 §5.5, "back off the timer"; initial RTO 1 s, §2.1 and
§5.7; a maximum may be placed on it, §2.5 — Linux's ``TCP_RTO_MAX`` is
120 s). Data stuck since ``t0`` therefore flows again only at the first
retransmission instant ``t0 + rto·(1 + 2 + 4 + ...)`` at or after the
path came back. The controller *releases* the toxic (an update with
``released=1``) when the tunnel ends instead of removing it: a connection
with data stuck waits for its next retransmission, then passes everything
through; a connection that sent nothing during the tunnel (no timer running)
and every new one pass at once. The toxic is removed ``rto_max`` later, when
no retransmission can still be pending. With ``rto_initial`` 0 (the
default) a release passes at once, as a removal does.

Although added with a ``stream`` (and listed under it), one blackhole
applies to both directions of every connection of its proxy; the two
directions share the connection's stuck time (a retransmission that gets
through re-opens the path both ways).
"""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub

#: Linux's ceiling on the retransmission timeout (``TCP_RTO_MAX``), ms.
LINUX_RTO_MAX_MS = 120_000
#: RFC 6298 §2.1: the initial RTO, ms (what a sender whose RTT estimate is fresh falls back to
#: after a timeout: §5.7).
RFC6298_INITIAL_RTO_MS = 1_000


def next_retransmission(stuck_since: float, back_at: float, rto_initial_s: float, rto_max_s: float) -> float:
    """The first retransmission instant at or after ``back_at`` of data first sent at ``stuck_since``.

    Retransmissions come ``rto``, ``2·rto``, ``4·rto``... apart (each interval
    capped at ``rto_max_s``), counted from the first send. Pure arithmetic.
    """
    if rto_initial_s <= 0 or back_at <= stuck_since:
        return max(back_at, stuck_since)
    at = stuck_since
    interval = rto_initial_s
    while at < back_at:
        at += interval
        interval = min(interval * 2, max(rto_max_s, rto_initial_s))
    return at


@dataclass
class StuckState:
    """Per connection (both directions): when data first waited in the tunnel, when it may go."""

    since: float | None = None
    resume_at: float | None = None


@dataclass(frozen=True, slots=True)
class BlackholeToxic:
    #: Initial retransmission timeout, ms; 0: the path resumes the instant it is released.
    rto_initial: int = 0
    #: Cap on the retransmission interval, ms (Linux: 120 s).
    rto_max: int = LINUX_RTO_MAX_MS
    #: 1 once the tunnel is over: stuck connections wait for their next retransmission, then pass.
    released: int = 0

    def new_state(self) -> StuckState:
        return StuckState()

    async def pipe(self, stub: Stub) -> None:
        state = stub.state if isinstance(stub.state, StuckState) else StuckState()
        if not self.released:
            if state.since is None:
                item = await stub.recv()  # the first byte into the tunnel starts its sender's timer
                state.since = stub.clock.now()
                stub.input.push_front(item)
            await stub.wait_interrupt()
        if state.since is not None and self.rto_initial > 0:
            if state.resume_at is None:
                state.resume_at = next_retransmission(
                    state.since, stub.clock.now(), self.rto_initial / 1000, self.rto_max / 1000
                )
            await stub.sleep_until(state.resume_at)
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            stub.send(chunk)
