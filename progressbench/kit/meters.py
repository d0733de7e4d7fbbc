"""Server-side meters every service exports, the inputs of the cost model.

Billing on Cloud Run (request-based) is the time an instance has at least one
request in flight, so the ASGI middleware here tracks exactly that
(``billable_instance_seconds``), beside connection-seconds (the sum of every
request's or stream's open time), requests, bytes and the per-instance
concurrency limit. Open requests count up to the moment of a scrape, so a
long SSE stream is visible while it is still open.

The other platforms' billing needs more of the same instance (see
``_Clock``): busy periods (each rounded up on Cloud Run), background jobs'
execution time, the instance's life under scale-down with its idle tail
(instance-based billing), each request's wall time including the work it
left running (a Vercel function's duration) and the process's CPU time
(Vercel's active CPU). Which of these a service is billed by is the
transport's declaration (``progressbench/core/billed.py``), not this module's.

Each service gets its own ``CollectorRegistry``: nothing global leaks between
apps or tests.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from progressbench.core.config import Timing
from progressbench.kit import gcpauses

UNMETERED_PATHS = frozenset({"/metrics", "/healthz"})
#: Real seconds an instance at its concurrency limit asks a caller to wait before retrying.
REJECT_RETRY_AFTER_S = 1.0


#: The invocation (request) a piece of code runs for; tasks spawned from it inherit it, so a
#: Vercel-style ``after()`` task keeps its invocation billable until it ends.
_INVOCATION: contextvars.ContextVar[tuple[_Clock, int] | None] = contextvars.ContextVar(
    "pb_invocation", default=None
)


@dataclass
class _Clock:
    """Open-interval bookkeeping of one instance (monotonic seconds), the inputs of every billing mode.

    Three views of the same instance:

    * requests: connection-seconds (every request's open time), busy time (≥ 1
      request in flight: request-based billing) and how many busy periods.
      Connection-seconds are split in two: *held* requests wait on a job (a
      progress stream, a push held until the job ends, any WebSocket), so
      their duration follows the run's time scale; every other request's
      duration is processing, which the time scale does not compress;
    * invocations: each request's wall time until its response ended *and*
      every task it spawned ended (a Vercel function's duration with
      ``after()`` work);
    * activity: requests or background jobs running. Jobs' execution time is
      summed (``work``), and the instance's life under scale-down is the
      active time plus each idle gap up to ``idle_tail_s`` (instance-based
      billing: an instance lives on that long after its last work, then
      scales to zero; before its first work it does not exist).
    """

    idle_tail_s: float = 0.0
    in_flight: int = 0
    #: When the last request ended (monotonic; None before the first one ended).
    last_request_end: float | None = None
    busy_since: float | None = None
    busy_total: float = 0.0
    busy_periods: int = 0
    conn_closed_total: float = 0.0
    held_closed_total: float = 0.0
    open_starts: dict[int, float] = field(default_factory=dict)
    #: open requests (and invocations) marked as waiting on a job
    held: set[int] = field(default_factory=set)
    held_invocations: set[int] = field(default_factory=set)
    held_invocation_closed_total: float = 0.0
    started_at: float = field(default_factory=time.monotonic)
    # invocations: start time and how many holders (the response, spawned tasks) are left
    invocations: dict[int, list[float]] = field(default_factory=dict)
    invocation_closed_total: float = 0.0
    # background work
    work_starts: dict[object, float] = field(default_factory=dict)
    work_closed_total: float = 0.0
    #: the part of ``work`` spent in the jobs' planned step durations (what the time scale compresses)
    work_waiting_total: float = 0.0
    # activity (requests + work) and the life it implies
    active: int = 0
    active_since: float = 0.0
    idle_since: float | None = None
    life_closed_total: float = 0.0

    def begin(self, key: int, now: float) -> None:
        self.open_starts[key] = now
        if self.in_flight == 0:
            self.busy_since = now
            self.busy_periods += 1
        self.in_flight += 1
        self.invocations[key] = [now, 1.0]
        self._activity(+1, now)

    def mark_held(self, key: int) -> None:
        """Request ``key`` waits on a job: its open time follows the time scale."""
        if key in self.open_starts:
            self.held.add(key)
        if key in self.invocations:
            self.held_invocations.add(key)

    def end(self, key: int, now: float) -> None:
        start = self.open_starts.pop(key, now)
        self.conn_closed_total += now - start
        if key in self.held:
            self.held.discard(key)
            self.held_closed_total += now - start
        self.in_flight -= 1
        self.last_request_end = now
        if self.in_flight == 0 and self.busy_since is not None:
            self.busy_total += now - self.busy_since
            self.busy_since = None
        self.release(key, now)
        self._activity(-1, now)

    def hold(self, key: int) -> None:
        """Keep invocation ``key`` open until a matching :meth:`release` (a spawned task)."""
        if key in self.invocations:
            self.invocations[key][1] += 1

    def release(self, key: int, now: float) -> None:
        entry = self.invocations.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self.invocations[key]
            self.invocation_closed_total += now - entry[0]
            if key in self.held_invocations:
                self.held_invocations.discard(key)
                self.held_invocation_closed_total += now - entry[0]

    def work_begin(self, key: object, now: float) -> None:
        if key in self.work_starts:
            return
        self.work_starts[key] = now
        self._activity(+1, now)

    def work_end(self, key: object, now: float) -> None:
        start = self.work_starts.pop(key, None)
        if start is None:
            return
        self.work_closed_total += now - start
        self._activity(-1, now)

    def _activity(self, delta: int, now: float) -> None:
        if delta > 0 and self.active == 0:
            if self.idle_since is not None:
                self.life_closed_total += min(now - self.idle_since, self.idle_tail_s)
            self.active_since = now
            self.idle_since = None
        self.active += delta
        if delta < 0 and self.active == 0:
            self.life_closed_total += now - self.active_since
            self.idle_since = now

    def busy_seconds(self, now: float) -> float:
        live = now - self.busy_since if self.busy_since is not None else 0.0
        return self.busy_total + live

    def connection_seconds(self, now: float) -> float:
        return self.conn_closed_total + sum(now - s for s in self.open_starts.values())

    def held_seconds(self, now: float) -> float:
        return self.held_closed_total + sum(now - self.open_starts[k] for k in self.held)

    def invocation_seconds(self, now: float) -> float:
        return self.invocation_closed_total + sum(now - e[0] for e in self.invocations.values())

    def held_invocation_seconds(self, now: float) -> float:
        live = sum(now - self.invocations[k][0] for k in self.held_invocations if k in self.invocations)
        return self.held_invocation_closed_total + live

    def work_seconds(self, now: float) -> float:
        return self.work_closed_total + sum(now - s for s in self.work_starts.values())

    def work_processing_seconds(self, now: float) -> float:
        """Work time outside the steps' planned durations: claims, commits, hooks (real at any scale)."""
        return max(self.work_seconds(now) - self.work_waiting_total, 0.0)

    def life_seconds(self, now: float) -> float:
        """The instance's life so far under scale-down after ``idle_tail_s`` idle (non-decreasing)."""
        if self.active > 0:
            return self.life_closed_total + now - self.active_since
        if self.idle_since is not None:
            return self.life_closed_total + min(now - self.idle_since, self.idle_tail_s)
        return self.life_closed_total


def request_waits_on_job() -> None:
    """Mark the current request as waiting on a job (a stream, a push held to the job's end).

    Its open time then counts as *held* (it follows the run's time scale)
    rather than as processing (which does not). Outside a request it does
    nothing. WebSockets are held without being marked.
    """
    current = _INVOCATION.get()
    if current is not None:
        clock, key = current
        clock.mark_held(key)


class _TimeCollector(Collector):
    def __init__(self, clock: _Clock, service: str) -> None:
        self._clock = clock
        self._service = service

    def collect(self) -> Iterable[CounterMetricFamily]:
        now = time.monotonic()
        c = self._clock
        for name, doc, value in (
            (
                "pb_connection_seconds",
                "Sum of open time of every request and stream",
                c.connection_seconds(now),
            ),
            (
                "pb_billable_instance_seconds",
                "Time with at least one request in flight (request-based billing)",
                c.busy_seconds(now),
            ),
            ("pb_held_seconds", "Open time of requests that wait on a job (scaled)", c.held_seconds(now)),
            (
                "pb_processing_seconds",
                "Open time of every other request: processing, not scaled",
                max(c.connection_seconds(now) - c.held_seconds(now), 0.0),
            ),
            ("pb_busy_periods", "Times the instance went from no request to one in flight", c.busy_periods),
            (
                "pb_instance_seconds",
                "Instance lifetime, never scaled down (the testbed's own)",
                now - c.started_at,
            ),
            (
                "pb_instance_tail_seconds",
                "Instance life under scale-down: active time plus each idle gap up to the idle tail",
                c.life_seconds(now),
            ),
            (
                "pb_invocation_seconds",
                "Sum of each request's wall time until it and the tasks it spawned ended (Vercel duration)",
                c.invocation_seconds(now),
            ),
            (
                "pb_held_invocation_seconds",
                "Invocation seconds of requests that wait on a job (scaled)",
                c.held_invocation_seconds(now),
            ),
            (
                "pb_invocation_processing_seconds",
                "Invocation seconds of every other request: processing and after() work, not scaled",
                max(c.invocation_seconds(now) - c.held_invocation_seconds(now), 0.0),
            ),
            (
                "pb_work_seconds",
                "Sum of background jobs' execution time on this instance",
                c.work_seconds(now),
            ),
            (
                "pb_work_waiting_seconds",
                "Part of the work spent in the steps' planned durations (scaled)",
                c.work_waiting_total,
            ),
            (
                "pb_work_processing_seconds",
                "Part of the work outside the steps' planned durations: commits, hooks (not scaled)",
                c.work_processing_seconds(now),
            ),
            ("pb_cpu_seconds", "CPU time of the whole process (user + system)", time.process_time()),
        ):
            family = CounterMetricFamily(name, doc, labels=["service"])
            family.add_metric([self._service], value)
            yield family


class Meters:
    """The counters of one service instance, plus the ASGI middleware feeding them."""

    def __init__(self, service: str, concurrency: int, timing: Timing | None = None) -> None:
        """``timing``: the run's; its scale-down idle time, scaled, meters instance lives (0 without it)."""
        self.service = service
        self.concurrency = concurrency
        #: What a refusal at the limit asks the caller to wait (a queue honours it): scaled like every timer.
        self.retry_after = retry_after_header((timing or Timing()).scaled(REJECT_RETRY_AFTER_S))
        self.registry = CollectorRegistry(auto_describe=True)
        tail = timing.scaled(timing.scale_down_idle_s) if timing is not None else 0.0
        self.clock = _Clock(idle_tail_s=tail)
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
        self.registry.register(gcpauses.PauseCollector(gcpauses.install(), service))
        # This service's children of the per-request counters, looked up once (labels() takes a
        # lock and builds a tuple: per request, and per message of every stream).
        self.flying = self.in_flight.labels(service)
        self.sent = self.bytes_sent.labels(service)
        self.received = self.bytes_received.labels(service)

    def count_write(self, rows: int) -> None:
        self.db_writes.labels(self.service).inc(rows)

    def count_read(self, queries: int) -> None:
        self.db_reads.labels(self.service).inc(queries)

    def hold_invocation(self) -> Callable[[], None]:
        """Keep the current request's invocation open until the returned callback runs.

        For work a handler leaves running after its response (``after()``):
        outside a request it does nothing.
        """
        current = _INVOCATION.get()
        if current is None or current[0] is not self.clock:
            return lambda: None
        clock, key = current
        clock.hold(key)
        return lambda: clock.release(key, time.monotonic())

    def work_begin(self, key: object) -> None:
        """A background job started on this instance (it keeps the instance alive and working)."""
        self.clock.work_begin(key, time.monotonic())

    def work_end(self, key: object) -> None:
        self.clock.work_end(key, time.monotonic())

    def work_waited(self, seconds: float) -> None:
        """A background job spent ``seconds`` in a step's planned duration (the scaled part of its work)."""
        if seconds > 0:
            self.clock.work_waiting_total += seconds

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        return MeteringMiddleware(app, self)


class _Metered:
    """One request's ``receive`` and ``send`` as the meters see them: bytes counted, status kept.

    One small object per request, called as ``send`` (its :meth:`receive` is the one bound
    method made), instead of a status dict and two closures with their cells: an SSE stream
    holds this for its whole life, and a process holds a thousand streams.
    """

    __slots__ = ("_meters", "_receive", "_send", "status")

    def __init__(self, meters: Meters, receive: Receive, send: Send) -> None:
        self._meters = meters
        self._receive = receive
        self._send = send
        self.status = "none"

    async def receive(self) -> Message:
        message = await self._receive()
        body = message.get("body") or message.get("bytes") or message.get("text") or b""
        if body:
            self._meters.received.inc(len(body))
        return message

    async def __call__(self, message: Message) -> None:
        mtype = message["type"]
        if mtype == "http.response.start":
            self.status = str(message["status"])
        elif mtype == "websocket.accept":
            self.status = "101"
        body = message.get("body") or message.get("bytes") or message.get("text") or b""
        if body:
            self._meters.sent.inc(len(body))
        await self._send(message)


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
        if m.clock.in_flight >= m.concurrency:
            m.rejected.labels(m.service).inc()
            if kind == "http":
                await _reject(send, m.retry_after)
            else:
                await send({"type": "websocket.close", "code": 1013})
            return
        key = id(scope)
        m.clock.begin(key, time.monotonic())
        token = _INVOCATION.set((m.clock, key))
        if kind == "websocket":
            m.clock.mark_held(key)
        m.flying.inc()
        metered = _Metered(m, receive, send)
        try:
            await self.app(scope, metered.receive, metered)
        finally:
            _INVOCATION.reset(token)
            m.clock.end(key, time.monotonic())
            m.flying.dec()
            m.requests.labels(m.service, kind, metered.status).inc()


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
