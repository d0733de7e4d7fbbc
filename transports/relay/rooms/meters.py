"""The rooms' Prometheus meters, beside the generic service meters they extend."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from progressbench.kit.meters import Meters


class RoomMeters:
    """Sockets, refusals, publishes and rooms; messages and bytes go to the base meters (priced)."""

    def __init__(self, meters: Meters) -> None:
        r, self.service = meters.registry, meters.service
        self.base = meters
        self.open = Gauge("pb_relay_connections", "Open room sockets", ["service"], registry=r)
        self.peak = Gauge(
            "pb_relay_peak_connections", "Most room sockets open at once", ["service"], registry=r
        )
        self.opened = Counter("pb_relay_connections_opened", "Room sockets accepted", ["service"], registry=r)
        self.refused = Counter("pb_relay_refused", "Joins refused", ["service", "reason"], registry=r)
        self.publishes = Counter("pb_relay_publishes", "HTTP publishes into rooms", ["service"], registry=r)
        self.received = Counter(
            "pb_relay_messages_received", "Messages received from sockets", ["service"], registry=r
        )
        self.rooms = Gauge("pb_relay_rooms", "Rooms with at least one socket", ["service"], registry=r)
