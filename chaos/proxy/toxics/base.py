"""The one toxic interface, its two optional extras, and a type's registry entry.

A toxic is a small frozen dataclass: its fields are the integer attributes
of the HTTP API (``{"latency": 100, "jitter": 10}``), and its single method
``pipe(stub)`` moves items from ``stub.input`` to ``stub.output`` until
end-of-stream or interruption. The same instance serves every connection;
per-connection data lives in ``stub.state``.

Optional abilities are separate Protocols, as in Toxiproxy's ``toxics/toxic.go``:

* :class:`StatefulToxic` — ``new_state()`` makes the per-connection state
  that survives restarts (``limit_data`` counts bytes across updates);
* :class:`CleanupToxic` — ``cleanup(stub)`` runs when the toxic is removed
  (``timeout`` closes the connection then).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from progressbench.chaos.proxy.stub import Stub


@runtime_checkable
class Toxic(Protocol):
    """Transforms one direction's stream of chunks; returns at end-of-stream."""

    async def pipe(self, stub: Stub) -> None: ...


@runtime_checkable
class StatefulToxic(Protocol):
    def new_state(self) -> object: ...


@runtime_checkable
class CleanupToxic(Protocol):
    def cleanup(self, stub: Stub) -> None: ...


@dataclass(frozen=True)
class ToxicKind:
    """One registered ``type``: how to build it and how the proxy must place it.

    ``both_directions``: the toxic joins the chains of both links of every
    connection (one shared state per connection), though the API lists it
    under the stream it was added with. ``resets_peer``: connections opened
    while such a toxic exists get ``SO_LINGER=0``, so closes become RSTs.
    ``go_name`` and ``go_int`` name the Go struct and integer type in
    Toxiproxy-style error messages.
    """

    name: str
    factory: type[Toxic]
    go_name: str
    both_directions: bool = False
    resets_peer: bool = False
    go_int: str = "int64"
