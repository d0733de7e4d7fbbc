"""The transports, listed explicitly. Nothing outside this package branches on a name."""

from __future__ import annotations

from collections.abc import Iterable

from progressbench.transports import polling, realtime, relay, sse
from progressbench.transports.types import ServiceSpec, Transport

from progressbench.core.errors import ConfigError

REGISTRY: dict[str, Transport] = {
    t.name: t for t in (polling.TRANSPORT, sse.NAIVE, sse.RESUMABLE, realtime.TRANSPORT, relay.TRANSPORT)
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


def available() -> list[str]:
    names: list[str] = []
    for t in REGISTRY.values():
        names.append(t.name)
        names.extend(f"{t.name}:{v}" for v in sorted(t.variants))
    return names
