"""The rooms' Prometheus meters, beside the generic service meters they extend."""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from progressbench.kit.meters import Meters


class RoomClock:
    """Seconds each room was active, summed: what a Durable Object bills for duration.

    A PartyKit room without hibernation (this one: 100 sockets per room) is
    an object that stays active, and billed, while any socket is open; it
    ends when the last one leaves. Open rooms count up to the moment of a scrape.
    """

    def __init__(self) -> None:
        self.since: dict[Hashable, float] = {}
        self.closed_total = 0.0

    def opened(self, room: Hashable, now: float) -> None:
        self.since.setdefault(room, now)

    def closed(self, room: Hashable, now: float) -> None:
        start = self.since.pop(room, None)
        if start is not None:
            self.closed_total += now - start

    def seconds(self, now: float) -> float:
        return self.closed_total + sum(now - s for s in self.since.values())


class _RoomCollector(Collector):
    def __init__(self, clock: RoomClock, service: str) -> None:
        self._clock, self._service = clock, service

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "pb_room_active_seconds", "Sum over rooms of the time each had a socket open", labels=["service"]
        )
        family.add_metric([self._service], self._clock.seconds(time.monotonic()))
        yield family


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
        self.active = RoomClock()
        r.register(_RoomCollector(self.active, self.service))
