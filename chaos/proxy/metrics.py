"""``GET /metrics``: Toxiproxy's per-proxy byte counters, read live, when switched on.

As in Toxiproxy, the endpoint exists only if the server was started with
``--proxy-metrics`` (these counters) and/or ``--runtime-metrics`` (the
Python process's own collectors, where Toxiproxy has Go's).
Metric names and labels are Toxiproxy's (``-proxy-metrics``):
``toxiproxy_proxy_received_bytes_total`` (bytes read from a link's source)
and ``toxiproxy_proxy_sent_bytes_total`` (bytes written to its destination),
labelled ``direction``, ``proxy``, ``listener``, ``upstream``. One deliberate
difference: the counters include live connections (Toxiproxy adds a link's
bytes only when it closes). On top,
``chaos_proxy_connections`` gauges the open connections per proxy.

Counting costs nothing on the data path: links keep plain integers, which
this collector sums at scrape time, plus the totals of finished connections.
It lives in a private :class:`~prometheus_client.CollectorRegistry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from progressbench.chaos.proxy.connection import Connection
from progressbench.chaos.proxy.proxy import Proxy
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Labels = tuple[str, str, str, str]
#: The text format ``generate_latest`` writes, named as Go's client names it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABEL_NAMES = ["direction", "proxy", "listener", "upstream"]


def _labels(proxy: Proxy, direction: str) -> Labels:
    return (direction, proxy.name, proxy.listen, proxy.upstream)


class ProxyMetrics(Collector):
    """Collector over the live proxies plus a ledger of finished connections."""

    def __init__(
        self, proxies: Callable[[], Iterable[Proxy]], *, proxy_metrics: bool = True, runtime: bool = False
    ) -> None:
        self._proxies = proxies
        self._retired: dict[Labels, list[int]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        if proxy_metrics:
            self.registry.register(self)
        if runtime:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)

    def retire(self, proxy: Proxy, connection: Connection) -> None:
        """Fold a finished connection's counts into the totals."""
        for link in connection.links:
            totals = self._retired.setdefault(_labels(proxy, link.direction.value), [0, 0])
            totals[0] += link.received
            totals[1] += link.sink.sent

    def collect(self) -> Iterator[Metric]:
        counts = {labels: list(totals) for labels, totals in self._retired.items()}
        connections = GaugeMetricFamily(
            "chaos_proxy_connections", "Open client connections per proxy", labels=["proxy"]
        )
        for proxy in self._proxies():
            connections.add_metric([proxy.name], len(proxy.connections))
            for connection in proxy.connections:
                for link in connection.links:
                    totals = counts.setdefault(_labels(proxy, link.direction.value), [0, 0])
                    totals[0] += link.received
                    totals[1] += link.sink.sent
        received = CounterMetricFamily(
            "toxiproxy_proxy_received_bytes",
            "Bytes read from the source of a link",
            labels=LABEL_NAMES,
        )
        sent = CounterMetricFamily(
            "toxiproxy_proxy_sent_bytes",
            "Bytes written to the destination of a link",
            labels=LABEL_NAMES,
        )
        for labels, (got, put) in sorted(counts.items()):
            received.add_metric(list(labels), got)
            sent.add_metric(list(labels), put)
        yield received
        yield sent
        yield connections

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE
