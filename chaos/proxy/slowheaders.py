"""uvicorn's HTTP/1.1 protocol with a deadline on every request head (issue #13, probe 12).

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but
not the time a client takes to send a request's line and headers, so a
client that trickles header bytes holds a connection (and a slot) forever.
Here a timer starts with the connection, and again with the first bytes of
each later request, and closes the connection if the head is not complete
when it fires; a complete head (or a WebSocket upgrade) disarms it. The
body and the response are not covered: routes bound those themselves.

A copy of ``progressbench.kit.slowheaders``: the standalone chaos proxy imports
nothing of the harness, so it keeps its own (keep the two alike).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderDeadlineH11(H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request head is late; see module doc."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._head_timer is None:
            self._arm()
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderDeadlineH11]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``."""
    return type("HeaderDeadlineH11", (HeaderDeadlineH11,), {"header_timeout_s": seconds})
