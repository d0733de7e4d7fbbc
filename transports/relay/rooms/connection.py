"""A room socket that also answers the room's HTTP publish, before any WebSocket parsing.

The first read decides, once, what the connection is: a ``POST`` goes to a
:class:`~progressbench.transports.relay.rooms.http11.RequestReader` and is
answered as plain HTTP/1.1, then closed; anything else is handed to the
``websockets`` machinery untouched. The server's opening-handshake timeout
covers both: a publish that never completes is cut like a stalled upgrade.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from progressbench.transports.relay.rooms.http11 import (
    PublishRequest,
    Refusal,
    RequestReader,
    response_bytes,
    starts_post,
)
from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)

Publisher = Callable[[PublishRequest], tuple[int, dict[str, Any]]]
"""Serves one complete publish: (status, JSON answer)."""


class _RoomConnection(ServerConnection):
    """A server connection that also answers a plain ``POST`` (the room's HTTP publish).

    Use :func:`connection_class` to bind it to a hub's publisher.
    """

    publisher: Publisher | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reader: RequestReader | None = None
        self._first = True
        self._http_done: asyncio.Future[None] = self.loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if starts_post(data):
                self._reader = RequestReader()
        if self._reader is None:
            super().data_received(data)
            return
        outcome = self._reader.feed(data)
        if isinstance(outcome, Refusal):
            self._answer(outcome.status, {"detail": outcome.detail})
        elif outcome is not None:
            self._answer(*self._publish(outcome))

    def eof_received(self) -> None:
        if self._reader is None:
            super().eof_received()

    def _publish(self, request: PublishRequest) -> tuple[int, dict[str, Any]]:
        publisher = self.publisher
        if publisher is None:
            return 503, {"detail": "not ready"}
        try:
            return publisher(request)
        except Exception:
            log.exception("publish to %s failed", request.path)
            return 500, {"detail": "publish failed"}

    def _answer(self, status: int, answer: dict[str, Any]) -> None:
        if self._http_done.done():
            return
        self.transport.write(response_bytes(status, answer))
        self.transport.close()
        self._http_done.set_result(None)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.wait(
            [self.request_rcvd, self.connection_lost_waiter, self._http_done],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._reader is not None:
            # A plain HTTP exchange: wait until the answer is flushed and the socket closed,
            # so the server's abort() of a non-WebSocket connection cannot cut it short.
            await self.connection_lost_waiter
            return
        await super().handshake(*args, **kwargs)


def connection_class(publisher: Publisher) -> type[_RoomConnection]:
    """A :class:`_RoomConnection` subclass whose POSTs go to ``publisher`` (no module state)."""
    return type("RoomConnection", (_RoomConnection,), {"publisher": staticmethod(publisher)})
