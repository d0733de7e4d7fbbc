"""One socket of a proxied connection (client side or server side), as an asyncio Protocol.

An endpoint is both the *source* of one link (the bytes it reads) and the
*destination* of the other (the bytes written to it). It starts with
reading paused; the connection releases it once both sides are wired.

Reading is paused while any *hold* is present: ``SETUP`` until the
connection is attached, ``BACKPRESSURE`` while the other endpoint's write
buffer is over its high-water mark, ``BACKLOG`` while too many bytes sit in
the link's toxic chain, and one key per ``pause_reader`` toxic.

Closing is graceful (FIN after the write buffer drains; an RST if the
socket has ``SO_LINGER=0``), with a safety abort if the peer never reads
the rest: nothing in the proxy waits forever on a stalled peer.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Final, cast

from progressbench.chaos.proxy.types import Inbound, SourceGate

SETUP: Final = "setup"
BACKPRESSURE: Final = "backpressure"
BACKLOG: Final = "backlog"

WRITE_HIGH_WATER = 256 << 10
"""Write-buffer size above which the link feeding this endpoint stops reading its source."""
CLOSE_FLUSH_TIMEOUT = 10.0
"""Seconds a closing socket may spend flushing its write buffer before it is aborted."""


class Endpoint(asyncio.Protocol):
    """An asyncio protocol that hands reads to its inbound link and takes writes."""

    def __init__(
        self,
        role: str,
        on_made: Callable[[Endpoint], None] | None = None,
    ) -> None:
        self.role = role
        self.transport: asyncio.Transport | None = None
        #: The link this endpoint is the source of (what it reads goes there).
        self.inbound: Inbound | None = None
        #: The link writing into this endpoint (its source waits while our write buffer is full).
        self.outbound: SourceGate | None = None
        self.on_lost: Callable[[], None] | None = None
        self.lost = False
        self.eof = False
        self._holds: set[object] = {SETUP}
        self._on_made = on_made
        self._abort_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.pause_reading()
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        link = self.inbound
        if link is not None:
            link.feed(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.inbound is not None:
            self.inbound.feed_eof()
        return True  # keep our side open: the link decides when to close it

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if self.inbound is not None:
            self.inbound.feed_eof()
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        if self.outbound is not None:
            self.outbound.hold_source(BACKPRESSURE)

    def resume_writing(self) -> None:
        if self.outbound is not None:
            self.outbound.release_source(BACKPRESSURE)

    # -- reading control --------------------------------------------------

    def hold(self, key: object) -> None:
        """Stop reading until every hold is released."""
        if key in self._holds:
            return
        self._holds.add(key)
        if len(self._holds) == 1 and self._can_toggle():
            assert self.transport is not None
            self.transport.pause_reading()

    def release(self, key: object) -> None:
        if key not in self._holds:
            return
        self._holds.discard(key)
        if not self._holds and self._can_toggle():
            assert self.transport is not None
            self.transport.resume_reading()

    def release_all(self) -> None:
        for key in list(self._holds):
            self.release(key)

    def _can_toggle(self) -> bool:
        transport = self.transport
        return transport is not None and not self.eof and not transport.is_closing()

    # -- writing and closing ----------------------------------------------

    def write(self, data: bytes) -> bool:
        """Queue bytes for the peer; False if the socket is gone or closing."""
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return False
        transport.write(data)
        return True

    def set_linger_zero(self) -> None:
        """Make the eventual close an RST (``SO_LINGER`` on, timeout 0)."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        """Close after flushing what is queued (FIN, or RST with linger 0)."""
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return
        transport.close()
        if not self.lost and transport.get_write_buffer_size() > 0:
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(CLOSE_FLUSH_TIMEOUT, self.abort)

    def abort(self) -> None:
        """Close at once, dropping unsent bytes."""
        if self.transport is not None and not self.lost:
            self.transport.abort()
