"""uvicorn's HTTP/1.1 protocols with a deadline on every request head (issue #13, probe 12).

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but
not the time a client takes to send a request's line and headers, so a
client that trickles header bytes holds a connection (and a slot) forever.
Here a timer starts with the connection, and again with the first bytes of
each later request, and closes the connection if the head is not complete
when it fires; a complete head (or a WebSocket upgrade) disarms it. The
body and the response are not covered: routes bound those themselves.

The standalone chaos proxy keeps its own copy of this small class
(``chaos/proxy/slowheaders.py``), since it imports nothing of the harness.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # the C parser (uvicorn's own choice when present): a request head parsed in C, not Python
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency; a stripped install falls back
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


class _HeadDeadline:
    """The timer itself, over either of uvicorn's HTTP/1.1 protocols (put first in the bases: its
    methods wrap the protocol's own through ``super()``)."""

    header_timeout_s: float = 10.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._head_timer is None:
            self._arm()
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()

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


class HeaderDeadlineH11(_HeadDeadline, H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request head is late; see module doc."""

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)


if HttpToolsProtocol is not None:

    class HeaderDeadlineHttpTools(_HeadDeadline, HttpToolsProtocol):
        """:class:`HttpToolsProtocol` with the same deadline on every request head."""

        def handle_websocket_upgrade(self) -> None:
            self._disarm()
            super().handle_websocket_upgrade()


def with_header_timeout(seconds: float) -> type[asyncio.Protocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``: httptools' when installed."""
    base: type[_HeadDeadline] = HeaderDeadlineH11 if HttpToolsProtocol is None else HeaderDeadlineHttpTools
    return type(base.__name__, (base,), {"header_timeout_s": seconds})
