"""The Toxiproxy v2 HTTP API as a Starlette app (routes, status codes, bodies, headers).

Matches Toxiproxy 2.12 (``api.go``, gorilla/mux): 201 for a created proxy,
200 for a created toxic, 204 for deletes and ``/reset``; errors as
``{"error": ..., "status": ...}`` + newline with ``text/plain;
charset=utf-8`` (``http.Error``), except ``/populate`` which answers JSON.
What gorilla/mux answers itself comes before any handler and so carries
neither the ``X-Toxiproxy-Request-Id`` header nor the browser guard: a 301
to the cleaned path for a path with ``//``, ``.`` or ``..``; ``404 page not
found`` for unknown paths (``/proxies/`` included); 405 with an empty body
for a known path with the wrong method (``HEAD`` included). Matched routes
get the request id, a 403 for browser user agents, and a 503 with an empty
body if the handler runs past 25 s (the work itself carries on). ``PATCH``
and the deprecated ``POST`` both update proxies and toxics. ``/metrics``
exists only when the server was started with metrics, for every method.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from progressbench.chaos.proxy import codec
from progressbench.chaos.proxy.codec import ApiError
from progressbench.chaos.proxy.collection import ProxyCollection
from progressbench.chaos.proxy.metrics import ProxyMetrics
from progressbench.chaos.proxy.model import ProxySpec
from progressbench.chaos.proxy.proxy import encode_entry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

TOXIPROXY_VERSION = "2.12.0"
HANDLER_TIMEOUT = 25.0
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
NOSNIFF = {"X-Content-Type-Options": "nosniff"}

Handler = Callable[[Request], Awaitable[Response]]
#: Toxiproxy registers ``/metrics`` with no method restriction.
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def _json(body: str | bytes, status: int = 200) -> Response:
    return Response(body, status, media_type=JSON)


def _error(error: ApiError) -> Response:
    return Response(codec.encode_error(error), error.status, media_type=TEXT, headers=NOSNIFF)


_sequence = itertools.count(int.from_bytes(os.urandom(3), "big"))


def _request_id() -> str:
    """An xid-shaped id: 4 bytes of time, 5 random, 3 of counter, base32hex → 20 chars."""
    counter = next(_sequence) & 0xFFFFFF
    raw = int(time.time()).to_bytes(4, "big") + os.urandom(5) + counter.to_bytes(3, "big")
    return base64.b32hexencode(raw).decode().lower().rstrip("=")


def clean_path(path: str) -> str:
    """gorilla/mux's ``cleanPath``: Go's ``path.Clean``, keeping a trailing slash."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    cleaned = "/" + "/".join(parts)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


class CleanPaths:
    """ASGI middleware: gorilla/mux's 301 to the cleaned path (before routing, so no request id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"] or "/"
            cleaned = clean_path(path)
            if cleaned != path:
                query = scope.get("query_string", b"")
                # Go's url.String(): the cleaned (decoded) path escaped again, the query as sent.
                location = quote(cleaned, safe="/!$&'()*+,;=:@[]~")
                location += "?" + query.decode("latin-1") if query else ""
                response = Response(status_code=301, headers={"Location": location})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ToxiproxyApi:
    """Route handlers over one :class:`ProxyCollection` (state lives there, not here)."""

    def __init__(self, proxies: ProxyCollection, metrics: ProxyMetrics | None) -> None:
        """``metrics``: None serves no ``/metrics`` (Toxiproxy without ``-proxy-metrics``)."""
        self.proxies = proxies
        self.metrics = metrics
        self._overdue: set[asyncio.Task[Response]] = set()

    def app(self) -> Starlette:
        e = self._endpoint
        routes = [
            Route("/reset", e(self.reset), methods=["POST"]),
            Route("/proxies", e(self.proxy_index), methods=["GET"]),
            Route("/proxies", e(self.proxy_create), methods=["POST"]),
            Route("/populate", e(self.populate), methods=["POST"]),
            Route("/proxies/{proxy}", e(self.proxy_show), methods=["GET"]),
            Route("/proxies/{proxy}", e(self.proxy_update), methods=["POST", "PATCH"]),
            Route("/proxies/{proxy}", e(self.proxy_delete), methods=["DELETE"]),
            Route("/proxies/{proxy}/toxics", e(self.toxic_index), methods=["GET"]),
            Route("/proxies/{proxy}/toxics", e(self.toxic_create), methods=["POST"]),
            Route("/proxies/{proxy}/toxics/{toxic}", e(self.toxic_show), methods=["GET"]),
            Route("/proxies/{proxy}/toxics/{toxic}", e(self.toxic_update), methods=["POST", "PATCH"]),
            Route("/proxies/{proxy}/toxics/{toxic}", e(self.toxic_delete), methods=["DELETE"]),
            Route("/version", e(self.version), methods=["GET"]),
        ]
        for route in routes:
            route.methods.discard("HEAD")  # type: ignore[union-attr]  # gorilla/mux adds no HEAD
        if self.metrics is not None:
            routes.append(Route("/metrics", e(self.metrics_text), methods=ANY_METHOD))
        app = Starlette(
            routes=routes,
            middleware=[Middleware(CleanPaths)],
            exception_handlers={404: _not_found, 405: _method_not_allowed},
        )
        app.router.redirect_slashes = False
        return app

    def _endpoint(self, handler: Handler) -> Handler:
        """Toxiproxy's route middleware around ``handler``: the request id, the browser guard,
        errors → Toxiproxy error bodies, and past 25 s an empty 503 (the work goes on)."""

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return _error(exc)
            except Exception as exc:
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(ApiError(str(exc) or type(exc).__name__, 500))

        async def timed(request: Request) -> Response:
            if request.headers.get("user-agent", "").startswith("Mozilla/"):
                return Response(b"User agent not allowed\n", 403, media_type=TEXT, headers=NOSNIFF)
            task = asyncio.ensure_future(guarded(request))
            try:
                return await asyncio.wait_for(asyncio.shield(task), HANDLER_TIMEOUT)
            except TimeoutError:
                self._overdue.add(task)
                task.add_done_callback(self._overdue.discard)
                return Response(status_code=503)

        async def run(request: Request) -> Response:
            response = await timed(request)
            response.headers["X-Toxiproxy-Request-Id"] = _request_id()
            return response

        return run

    # -- proxies ----------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        return Response(
            f'{{"version": "{TOXIPROXY_VERSION}"}}\n', media_type="application/json;charset=utf-8"
        )

    async def proxy_index(self, request: Request) -> Response:
        members = {name: proxy.encode() for name, proxy in self.proxies.proxies.items()}
        return _json(codec.encode_object(members))

    async def proxy_create(self, request: Request) -> Response:
        spec = codec.decode_proxy(await request.body(), ProxySpec("", "", "", enabled=True))
        proxy = await self.proxies.create(spec)
        return _json(proxy.encode(), 201)

    async def populate(self, request: Request) -> Response:
        try:
            specs = codec.decode_populate(await request.body())
        except ApiError as exc:
            return _json(codec.encode_populate([], exc), exc.status)
        done, error = await self.proxies.populate(specs)
        body = codec.encode_populate([p.encode() for p in done], error)
        return _json(body, 201 if error is None else error.status)

    async def proxy_show(self, request: Request) -> Response:
        return _json(self.proxies.get(request.path_params["proxy"]).encode())

    async def proxy_update(self, request: Request) -> Response:
        proxy = self.proxies.get(request.path_params["proxy"])
        current = ProxySpec(proxy.name, proxy.listen, proxy.upstream, proxy.enabled)
        spec = codec.decode_proxy(await request.body(), current)
        async with proxy.lock:
            await proxy.update(spec)
        return _json(proxy.encode())

    async def proxy_delete(self, request: Request) -> Response:
        await self.proxies.delete(request.path_params["proxy"])
        return Response(status_code=204)

    async def reset(self, request: Request) -> Response:
        await self.proxies.reset()
        return Response(status_code=204)

    # -- toxics ------------------------------------------------------------------

    async def toxic_index(self, request: Request) -> Response:
        proxy = self.proxies.get(request.path_params["proxy"])
        return _json(codec.encode_array(encode_entry(t) for t in proxy.listed_toxics()))

    async def toxic_create(self, request: Request) -> Response:
        proxy = self.proxies.get(request.path_params["proxy"])
        spec = codec.decode_toxic(await request.body())
        async with proxy.lock:
            entry = await proxy.add_toxic(spec)
        return _json(encode_entry(entry))

    async def toxic_show(self, request: Request) -> Response:
        proxy = self.proxies.get(request.path_params["proxy"])
        entry = proxy.find_toxic(request.path_params["toxic"])
        if entry is None:
            raise codec.toxic_not_found()
        return _json(encode_entry(entry))

    async def toxic_update(self, request: Request) -> Response:
        proxy = self.proxies.get(request.path_params["proxy"])
        found = proxy.find_toxic(request.path_params["toxic"])
        if found is None:  # Toxiproxy looks the toxic up before it reads the body
            raise codec.toxic_not_found()
        patch = codec.decode_toxic_patch(await request.body(), found.kind)
        async with proxy.lock:
            entry = await proxy.update_toxic(request.path_params["toxic"], patch)
        return _json(encode_entry(entry))

    async def toxic_delete(self, request: Request) -> Response:
        proxy = self.proxies.get(request.path_params["proxy"])
        async with proxy.lock:
            await proxy.remove_toxic(request.path_params["toxic"])
        return Response(status_code=204)

    # -- metrics ---------------------------------------------------------------------

    async def metrics_text(self, request: Request) -> Response:
        assert self.metrics is not None  # the route exists only with metrics
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)


async def _not_found(request: Request, exc: Exception) -> Response:
    return Response(b"404 page not found\n", 404, media_type=TEXT, headers=NOSNIFF)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return Response(status_code=405)
