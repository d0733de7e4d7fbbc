"""The one reconnect loop the watchers share, over :class:`~progressbench.core.reconnect.Reconnector`.

A watcher supplies an *attempt*: an async generator that connects once,
reports the connection through the state (``state.up(now)``), books every
progress event through ``state.receive`` and yields what the user sees. It
raises :class:`Dropped` when the connection is lost — after translating its
library's exceptions, so nothing else here knows httpx or websockets — and
:class:`~progressbench.core.errors.TransportError` for what no retry can
fix (that one propagates). :func:`redial` runs attempts until the terminal
event was shown, reporting each drop and waiting the back-off between
attempts. An attempt that ends on its own without the terminal event counts
as a drop: a watcher never spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from progressbench.core.events import ClientEvent
from progressbench.core.reconnect import Reconnector

#: One connection's events (an async generator, closed by :func:`redial` when it is done with it).
Attempt = Callable[[], AsyncGenerator[ClientEvent, None]]


class Dropped(Exception):
    """An attempt lost its connection; ``reason`` becomes the ``Disconnected`` reason.

    ``retry_after`` is the server's hint (``Retry-After``): the next attempt
    waits at least that long, whatever the back-off says.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


async def redial(
    state: Reconnector,
    delay: Callable[[int], float],
    attempt: Attempt,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[ClientEvent]:
    """Yield every attempt's events up to the terminal one; ``delay(state.retry)`` between attempts.

    The watch ends when the event the state booked as final (the very
    object) has been yielded, so an attempt may book a batch (a snapshot)
    before yielding it and the user still sees the whole batch.

    Each attempt is closed (its connection released) before the drop is
    reported, so ``Disconnected`` never precedes the socket's teardown.
    """
    while True:
        try:
            async with contextlib.aclosing(attempt()) as events:
                async for event in events:
                    yield event
                    if event is state.final:
                        return
            raise Dropped("ended")
        except Dropped as drop:
            for event in state.dropped(drop.reason, clock()):
                yield event
            await sleep(max(delay(state.retry), drop.retry_after or 0.0))
