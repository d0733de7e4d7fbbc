"""The transports: one subpackage each, listed in :mod:`progressbench.transports.registry`.

This package imports nothing on its own: a Locust process needs the
session specs, not four servers and their web frameworks. The registry's
names are still reachable from here (imported on first use).
"""

from __future__ import annotations

from typing import Any

_REGISTRY_NAMES = frozenset({"REGISTRY", "resolve", "services_for", "defaults", "available"})


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:
        from progressbench.transports import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
