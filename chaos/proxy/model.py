"""The Toxiproxy API's values: proxies and toxics as a client asks for them and as the server reports them.

One definition for both ends of the API. The server (:mod:`.codec`) decodes
request bodies into the ``*Spec``/``*Patch`` values with Go's rules and
writes the reports byte for byte; the adapter (:mod:`progressbench.chaos.client`)
builds the same specs and reads the reports back into the ``*Info`` values,
also from a real Toxiproxy. So this module lives in the proxy package, which
imports nothing of the harness beyond the core, and does no I/O.

Specs stay loose on purpose: ``stream`` is whatever the client sent (the
server parses it case-insensitively and answers 400 if it names no stream)
and ``attributes`` are raw JSON values, because which attributes exist, and
their integer types, depend on the toxic's type, which only the server's
registry knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Stream = Literal["upstream", "downstream"]
"""Toxiproxy's two streams: ``upstream`` is client→server, ``downstream`` server→client."""


# -- what a client sends ------------------------------------------------------------


@dataclass(frozen=True)
class ProxySpec:
    """A proxy as a client describes it (create, update, populate).

    ``enabled`` is ``None`` when the body leaves it out: a new proxy then
    starts, an updated one keeps its state.
    """

    name: str
    listen: str
    upstream: str
    enabled: bool | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"name": self.name, "listen": self.listen, "upstream": self.upstream}
        if self.enabled is not None:
            body["enabled"] = self.enabled
        return body


@dataclass(frozen=True)
class ToxicSpec:
    """A toxic to add. An empty ``name`` means ``<type>_<stream>``, chosen by the server."""

    type: str
    stream: str = "downstream"
    attributes: Mapping[str, object] = field(default_factory=dict)
    toxicity: float = 1.0
    name: str = ""

    @property
    def resolved_name(self) -> str:
        """The name the toxic gets (Toxiproxy derives it from the stream exactly as sent)."""
        return self.name or f"{self.type}_{self.stream}"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.resolved_name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True)
class ToxicPatch:
    """A toxic update: attribute values to merge into the current ones, and/or a new toxicity."""

    attributes: Mapping[str, object] = field(default_factory=dict)
    toxicity: float | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {}
        if self.attributes:
            body["attributes"] = dict(self.attributes)
        if self.toxicity is not None:
            body["toxicity"] = self.toxicity
        return body


# -- what the server reports ---------------------------------------------------------


@dataclass(frozen=True)
class ToxicInfo:
    """A toxic as the server reports it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToxicInfo:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            stream=str(data["stream"]),
            toxicity=float(data["toxicity"]),
            attributes={str(k): int(v) for k, v in dict(data.get("attributes") or {}).items()},
        )


@dataclass(frozen=True)
class ProxyInfo:
    """A proxy as the server reports it, with its resolved listen address split out."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    host: str
    port: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyInfo:
        listen = str(data["listen"])
        host, _, port = listen.rpartition(":")
        return cls(
            name=str(data["name"]),
            listen=listen,
            upstream=str(data["upstream"]),
            enabled=bool(data["enabled"]),
            host=host.strip("[]"),
            port=int(port) if port.isdigit() else 0,
        )

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect (``0.0.0.0``/``::`` listeners are reached on loopback)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return host, self.port
