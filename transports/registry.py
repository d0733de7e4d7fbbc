"""The transports, listed explicitly. Nothing outside this package branches on a name.

The registry's order is the default run order (``run`` without
``--transports`` runs every entry, variants only when asked for). Adding a
transport: ``README.md`` in this folder.

Importing this module imports each transport's ``__init__`` only: its
entry's data (names, variants, billing, timers, services, files). A server or
a client is imported when first used (``Transport.server`` /
``Transport.client``), so ``check`` and ``report`` import no web framework
and a phone's process imports the one client it drives
(``tests/unit/test_lazy_parts.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from progressbench.transports import polling, realtime, relay, sse
from progressbench.transports.types import ServiceSpec, Transport

from progressbench.core.errors import ConfigError

REGISTRY: dict[str, Transport] = {
    t.name: t for t in (sse.NAIVE, sse.RESUMABLE, realtime.TRANSPORT, relay.TRANSPORT, polling.TRANSPORT)
}


def resolve(spec: str) -> tuple[Transport, str | None]:
    """``"relay:ack-at-end"`` -> (relay transport, "ack-at-end"), validated."""
    name, _, variant = spec.partition(":")
    transport = REGISTRY.get(name)
    if transport is None:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"--transports: unknown transport {name!r} (known: {known})")
    if variant and variant not in transport.variants:
        variants = ", ".join(sorted(transport.variants)) or "none"
        raise ConfigError(f"--transports: {name!r} has no variant {variant!r} (variants: {variants})")
    return transport, variant or None


def services_for(specs: Iterable[str] | None = None) -> list[ServiceSpec]:
    """The extra services the given transports need (all registered ones when None), once each."""
    chosen = REGISTRY.values() if specs is None else [resolve(s)[0] for s in specs]
    found: dict[str, ServiceSpec] = {}
    for transport in chosen:
        for service in transport.services:
            found.setdefault(service.role, service)
    return list(found.values())


def defaults() -> tuple[str, ...]:
    """What ``run`` runs when not told: every registered transport, no variant."""
    return tuple(REGISTRY)


def available() -> list[str]:
    """Every name ``--transports`` accepts: each transport and each of its variants."""
    return [name for t in REGISTRY.values() for name in t.names]
