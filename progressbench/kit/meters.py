"""Server-side meters every service exports, the inputs of the cost model.

Billing on Cloud Run (request-based) is the time an instance has at least one
request in flight, so the ASGI middleware here tracks exactly that
(``billable_instance_seconds``), beside connection-seconds (the sum of every
request's or stream's open time), requests, bytes and the per-instance
concurrency limit. Open requests count up to the moment of a scrape, so a
long SSE stream is visible while it is still open.

Each service gets its own ``CollectorRegistry``: nothing global leaks between
apps or tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from progressbench.core.config import Timing

UNMETERED_PATHS = frozenset({"/metrics", "/healthz"})
#: Real seconds an instance at its concurrency limit asks a caller to wait before retrying.
REJECT_RETRY_AFTER_S = 1.0


@dataclass
class _Clock:
    """Open-interval bookkeeping for connection- and busy-seconds (monotonic)."""

    in_flight: int = 0
    busy_since: float | None = None
    busy_total: float = 0.0
    conn_closed_total: float = 0.0
    open_starts: dict[int, float] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)

    def begin(self, key: int, now: float) -> None:
        self.open_starts[key] = now
        if self.in_flight == 0:
            self.busy_since = now
        self.in_flight += 1

    def end(self, key: int, now: float) -> None:
        start = self.open_starts.pop(key, now)
        self.conn_closed_total += now - start
        self.in_flight -= 1
        if self.in_flight == 0 and self.busy_since is not None:
            self.busy_total += now - self.busy_since
            self.busy_since = None

    def busy_seconds(self, now: float) -> float:
        live = now - self.busy_since if self.busy_since is not None else 0.0
        return self.busy_total + live

    def connection_seconds(self, now: float) -> float:
        return self.conn_closed_total + sum(now - s for s in self.open_starts.values())


class _TimeCollector(Collector):
    def __init__(self, clock: _Clock, service: str) -> None:
        self._clock = clock
        self._service = service

    def collect(self) -> Iterable[CounterMetricFamily]:
        now = time.monotonic()
        for name, doc, value in (
            (
                "pb_connection_seconds",
                "Sum of open time of every request and stream",
                self._clock.connection_seconds(now),
            ),
            (
                "pb_billable_instance_seconds",
                "Time with at least one request in flight (request-based billing)",
                self._clock.busy_seconds(now),
            ),
            (
                "pb_instance_seconds",
                "Instance lifetime (instance-based billing)",
                now - self._clock.started_at,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["service"])
            family.add_metric([self._service], value)
            yield family


class Meters:
    """The counters of one service instance, plus the ASGI middleware feeding them."""

    def __init__(self, service: str, concurrency: int, timing: Timing | None = None) -> None:
        self.service = service
        self.concurrency = concurrency
        #: What a refusal at the limit asks the caller to wait (a queue honours it): scaled like every timer.
        self.retry_after = retry_after_header((timing or Timing()).scaled(REJECT_RETRY_AFTER_S))
        self.registry = CollectorRegistry(auto_describe=True)
        self.clock = _Clock()
        r = self.registry
        self.requests = Counter("pb_requests", "Requests answered", ["service", "kind", "status"], registry=r)
        self.rejected = Counter(
            "pb_rejected", "Requests refused at the concurrency limit", ["service"], registry=r
        )
        self.in_flight = Gauge("pb_requests_in_flight", "Requests in flight", ["service"], registry=r)
        self.bytes_sent = Counter("pb_bytes_sent", "Response bytes", ["service"], registry=r)
        self.bytes_received = Counter("pb_bytes_received", "Request bytes", ["service"], registry=r)
        self.db_writes = Counter("pb_db_writes", "Rows written to the store", ["service"], registry=r)
        self.db_reads = Counter("pb_db_reads", "Store read queries", ["service"], registry=r)
        self.messages = Counter(
            "pb_messages", "Transport messages pushed to clients", ["service", "transport"], registry=r
        )
        self.registry.register(_TimeCollector(self.clock, service))

    def count_write(self, rows: int) -> None:
        self.db_writes.labels(self.service).inc(rows)

    def count_read(self, queries: int) -> None:
        self.db_reads.labels(self.service).inc(queries)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        return MeteringMiddleware(app, self)


class MeteringMiddleware:
    def __init__(self, app: ASGIApp, meters: Meters) -> None:
        self.app = app
        self.meters = meters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope.get("path") in UNMETERED_PATHS:
            await self.app(scope, receive, send)
            return
        m = self.meters
        svc = m.service
        if m.clock.in_flight >= m.concurrency:
            m.rejected.labels(svc).inc()
            if kind == "http":
                await _reject(send, m.retry_after)
            else:
                await send({"type": "websocket.close", "code": 1013})
            return
        key = id(scope)
        m.clock.begin(key, time.monotonic())
        m.in_flight.labels(svc).inc()
        status = {"code": "none"}

        async def metered_receive() -> Message:
            message = await receive()
            body = message.get("body") or message.get("bytes") or message.get("text") or b""
            if body:
                m.bytes_received.labels(svc).inc(len(body))
            return message

        async def metered_send(message: Message) -> None:
            mtype = message["type"]
            if mtype == "http.response.start":
                status["code"] = str(message["status"])
            elif mtype == "websocket.accept":
                status["code"] = "101"
            body = message.get("body") or message.get("bytes") or message.get("text") or b""
            if body:
                m.bytes_sent.labels(svc).inc(len(body))
            await send(message)

        try:
            await self.app(scope, metered_receive, metered_send)
        finally:
            m.clock.end(key, time.monotonic())
            m.in_flight.labels(svc).dec()
            m.requests.labels(svc, kind, status["code"]).inc()


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` delta-seconds; fractional below 1 s, since a scaled run needs sub-second hints
    (RFC 9110 allows integers only; the testbed's own clients read decimals)."""
    return str(int(seconds)) if seconds >= 1 and seconds == int(seconds) else f"{seconds:.3f}"


async def _reject(send: Send, retry_after: str) -> None:
    body = b'{"detail":"instance at its concurrency limit"}'
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", retry_after.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def parse_exposition(text: str) -> dict[str, float]:
    """Sum every sample of a Prometheus text page by metric name (labels folded).

    The harness scrapes each instance before and after a cell; summing across
    label sets gives the per-service totals the cost model needs.
    """
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals
