"""A service's meters, summed over its instances — including the ones that are gone.

Each instance serves Prometheus counters on its admin socket. A killed
instance takes its counters with it, so before the supervisor stops one on
purpose it *retires* it: the last scrape is banked under the service and
added to every later total. A SIGKILL gives no such chance (the real
platform loses those meters too). ``*_in_flight`` gauges describe a moment,
not a sum, and are never banked.
"""

from __future__ import annotations

import logging

import httpx

from progressbench.app.instances import Instance, Role, Service
from progressbench.kit.meters import parse_exposition

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 5.0


def scrape(instance: Instance) -> dict[str, float]:
    """The instance's current meters; empty (and logged) if it does not answer."""
    try:
        response = httpx.get(f"{instance.admin_url}/metrics", timeout=SCRAPE_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("no meters from %s: %s", instance.name, exc)
        return {}
    return parse_exposition(response.text)


class MeterBook:
    """Banked meters of retired instances, per service."""

    def __init__(self) -> None:
        self.retired: dict[Role, dict[str, float]] = {}

    def retire(self, instance: Instance) -> None:
        """Bank a live instance's counters before it is stopped."""
        if not instance.alive():
            return
        banked = self.retired.setdefault(instance.role, {})
        for key, value in scrape(instance).items():
            if not key.endswith("_in_flight"):
                banked[key] = banked.get(key, 0.0) + value

    def totals(self, services: dict[Role, Service]) -> dict[str, dict[str, float]]:
        """Per service, counters summed over live instances plus retired ones."""
        result: dict[str, dict[str, float]] = {}
        for role, service in services.items():
            totals = dict(self.retired.get(role, {}))
            for instance in service.live():
                for key, value in scrape(instance).items():
                    totals[key] = totals.get(key, 0.0) + value
            result[role] = totals
        return result
