"""One published message as WebSocket frame bytes, built once per encoding and shared by sockets.

A server's frames are not masked, so a message is the same bytes on every
socket that encodes it the same way: without extensions, or with
permessage-deflate *without context takeover* (each message compressed from
a fresh state, so the output depends only on the message and the settings).
A socket whose compressor keeps context between messages has its own bytes
and must encode through its own protocol (:func:`encoding_of` answers None).

Sans-I/O: extensions and the message in, bytes out. The bytes are the ones
the socket's own ``websockets`` protocol would produce for ``send_text``;
``tests/unit/test_relay_frames.py`` pins that against the protocol itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import OP_TEXT, Frame

#: websockets' own defaults for a server's permessage-deflate (its ``compression="deflate"``),
#: with the server's context takeover off so one compressed frame fits every socket.
SHARED_DEFLATE = ServerPerMessageDeflateFactory(
    server_no_context_takeover=True,
    server_max_window_bits=12,
    client_max_window_bits=12,
    compress_settings={"memLevel": 5},
)

Encoding = Hashable
"""What decides a message's bytes on a socket: sockets with equal encodings get equal bytes."""


def encoding_of(extensions: Sequence[Extension]) -> Encoding | None:
    """The socket's outgoing encoding, or None when its frames depend on what it sent before."""
    if not extensions:
        return ()
    if len(extensions) == 1:
        ext = extensions[0]
        if type(ext) is PerMessageDeflate and ext.local_no_context_takeover:
            settings = tuple(sorted(ext.compress_settings.items()))
            return ("permessage-deflate", ext.local_max_window_bits, settings)
    return None


class SharedFrames:
    """One text message's frame bytes per encoding, each built on first need."""

    __slots__ = ("_built", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._built: dict[Encoding, bytes] = {}

    def frame(self, encoding: Encoding, extensions: Sequence[Extension]) -> bytes:
        """The frame for sockets with ``encoding`` (``extensions``: one such socket's, used once).

        Encoding through the socket's own extension objects is safe here: a
        compressor without context takeover keeps no state between messages.
        """
        built = self._built.get(encoding)
        if built is None:
            built = Frame(OP_TEXT, self.payload).serialize(mask=False, extensions=list(extensions))
            self._built[encoding] = built
        return built

    @property
    def encodings(self) -> int:
        """How many distinct encodings were built (each a compression or serialization)."""
        return len(self._built)
