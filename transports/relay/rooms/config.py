"""The rooms' settings, overridable per run with JSON in ``PROGRESSBENCH_RELAY_ROOMS``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

ROOMS_CONFIG_ENV = "PROGRESSBENCH_RELAY_ROOMS"
"""Read once, in :func:`progressbench.transports.relay.rooms.service.main`."""


class RoomsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: PartyKit: up to 100 connections per room without hibernation (32,000 with it).
    max_connections_per_room: int = Field(default=100, ge=1, le=32_000)
    #: Server-side WebSocket pings (unscaled seconds); None like PartyKit, which sends none.
    ping_interval_s: float | None = Field(default=None, gt=0)
