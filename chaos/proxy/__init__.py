"""A Toxiproxy-API-compatible TCP fault proxy in asyncio, plus mobile toxics.

Start it in-process with :class:`ChaosProxyServer` (``start()``/``stop()`` or
``async with``) or :func:`serve`, or as a process with
``python -m progressbench.chaos.proxy --host 127.0.0.1 --port 8474`` (see ``__main__``).
Drive it through :mod:`progressbench.chaos.client`, the project's one adapter.

Layout: ``api`` (HTTP routes) → ``collection``/``proxy`` (state) →
``connection``/``link``/``endpoint`` (sockets, chains) → ``toxics`` (pure
stream transforms behind ``stub``, with an injectable clock), imports
pointing down only (an import contract in ``pyproject.toml``). ``model``
holds the API's values, shared with the client adapter. The server and its
web stack load on first use, so the toxics and ``model`` import without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from progressbench.chaos.proxy.server import ChaosProxyServer, serve

__all__ = ["ChaosProxyServer", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from progressbench.chaos.proxy import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
