"""The realtime server process: ``python -m progressbench.transports.realtime.service``.

A Starlette app under uvicorn (:func:`progressbench.kit.runtime.run_asgi`)
serving the Realtime websocket at any of ``/realtime/v1/websocket``,
``/socket/websocket`` and ``/websocket``, plus ``GET /metrics`` and
``GET /healthz`` (on the service socket and the admin socket alike).

The handshake's ``vsn`` picks the socket's serializer (absent: 1.0.0); one
this server does not speak is refused with 403 ``{"error": ...}`` before the
upgrade, like Phoenix's failed serializer negotiation; a bad apikey with 401.

Meters: the shared :class:`~progressbench.kit.meters.Meters` (requests,
connection-seconds, bytes...) plus ``pb_realtime_messages_total`` (one per
change frame per listening client, Supabase's billing unit) and the gauge
``pb_peak_connections`` (the most sockets open at once), which the cost model
prices.

Start-up creates the replication slot before readiness is marked; shutdown
(SIGTERM) closes the sockets (uvicorn sends 1012) and drops the slot.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from progressbench.transports.realtime.auth import AuthError
from progressbench.transports.realtime.config import server_idle_timeout
from progressbench.transports.realtime.feed import ChangeFeed
from progressbench.transports.realtime.phoenix import RealtimeSocket, SocketSettings, connection_claims
from progressbench.transports.realtime.serializer import UnsupportedVsn, negotiate
from prometheus_client import Counter, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from progressbench.core.config import ServiceConfig
from progressbench.kit.meters import MeteringMiddleware, Meters
from progressbench.kit.runtime import run_asgi

#: The change feed's re-check when no NOTIFY woke it (a lost notification), real seconds.
FALLBACK_S = 1.0
WEBSOCKET_PATHS = ("/realtime/v1/websocket", "/socket/websocket", "/websocket")


class RealtimeMeters:
    def __init__(self, meters: Meters) -> None:
        self.meters = meters
        r = meters.registry
        doc = "Realtime messages delivered (1 per change per client)"
        self.messages = Counter("pb_realtime_messages", doc, ["service"], registry=r)
        self.peak = Gauge(
            "pb_peak_connections", "Most realtime sockets open at once", ["service"], registry=r
        )
        self.open = 0
        self.peak_value = 0
        # The labelled children, looked up once: ``labels()`` per delivery was a visible
        # share of the change feed's time in profiles.
        self._delivered = (
            self.messages.labels(meters.service),
            meters.messages.labels(meters.service, "realtime"),
        )

    def delivered(self, n: int) -> None:
        for counter in self._delivered:
            counter.inc(n)

    def opened(self) -> None:
        self.open += 1
        if self.open > self.peak_value:
            self.peak_value = self.open
            self.peak.labels(self.meters.service).set(self.peak_value)

    def closed(self) -> None:
        self.open -= 1


def build(config: ServiceConfig) -> ASGIApp:
    meters = Meters(config.role, config.concurrency, config.timing)
    rt_meters = RealtimeMeters(meters)
    feed = ChangeFeed(
        config.database_url, fallback_s=config.timing.scaled(FALLBACK_S), on_message=rt_meters.delivered
    )
    settings = SocketSettings(
        secret=config.token_secret,
        error_delay_s=config.timing.scaled(5.0),
        idle_timeout_s=server_idle_timeout(config.timing),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await feed.start()
        try:
            yield
        finally:
            await feed.stop()

    async def refuse(ws: WebSocket, status: int, reason: str) -> None:
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(JSONResponse({"error": reason}, status_code=status))
        else:
            await ws.close(1008, reason[:120])

    async def websocket(ws: WebSocket) -> None:
        # Phoenix negotiates the serializer before the socket's own connect check.
        try:
            serializer = negotiate(ws.query_params.get("vsn"))
        except UnsupportedVsn as exc:
            await refuse(ws, 403, str(exc))
            return
        apikey = ws.query_params.get("apikey") or ws.headers.get("x-api-key") or ""
        try:
            connection_claims(settings.secret, apikey)
        except AuthError as exc:
            await refuse(ws, 401, exc.reason)
            return
        await ws.accept()
        rt_meters.opened()
        try:
            await RealtimeSocket(ws, feed, settings, apikey, serializer).serve()
        finally:
            rt_meters.closed()

    async def metrics(request: Request) -> Response:
        return Response(meters.exposition(), media_type="text/plain; version=0.0.4")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "role": config.role, "instance": config.instance})

    routes: list[Route | WebSocketRoute] = [WebSocketRoute(p, websocket) for p in WEBSOCKET_PATHS]
    routes += [Route("/metrics", metrics), Route("/healthz", healthz)]
    app = Starlette(routes=routes, lifespan=lifespan)
    return MeteringMiddleware(app, meters)


def main() -> int:
    # Supabase Realtime's Phoenix endpoint leaves websocket compression at Phoenix's default
    # (off: lib/realtime_web/endpoint.ex sets no ``compress``), so its sockets never negotiate
    # permessage-deflate; uvicorn would, at a deflate per frame per socket.
    return run_asgi(build, ws_compression=False)


if __name__ == "__main__":
    sys.exit(main())
