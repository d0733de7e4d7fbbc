"""The production clock: the running event loop's monotonic time and timers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from progressbench.chaos.proxy.types import TimerHandle


class LoopClock:
    """:class:`~progressbench.chaos.proxy.types.Clock` backed by ``loop.time()`` and ``loop.call_at``."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        return self._loop.call_at(when, callback)
