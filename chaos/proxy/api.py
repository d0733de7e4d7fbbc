"""The Toxiproxy v2 HTTP API as a Starlette app (routes, status codes, bodies, headers).

Matches Toxiproxy 2.12 (``api.go``): 201 for a created proxy, 200 for a
created toxic, 204 for deletes and ``/reset``; errors as
``{"error": ..., "status": ...}`` + newline with ``text/plain;
charset=utf-8`` (``http.Error``), except ``/populate`` which answers JSON;
``404 page not found`` for unknown paths (``/proxies/`` included); 405 with
an empty body for a known path with the wrong method; 403 for browser user
agents; an ``X-Toxiproxy-Request-Id`` header on every response; a 503 with
an empty body if a handler runs past 25 s (the work itself carries on).
``PATCH`` and the deprecated ``POST`` both update proxies and toxics.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable

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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

TOXIPROXY_VERSION = "2.12.0"
HANDLER_TIMEOUT = 25.0
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
NOSNIFF = {"X-Content-Type-Options": "nosniff"}

Handler = Callable[[Request], Awaitable[Response]]


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


class ToxiproxyHeaders:
    """ASGI middleware: the browser guard and the request-id header, on every route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id().encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-toxiproxy-request-id", request_id))
                message["headers"] = headers
            await send(message)

        user_agent = dict(scope.get("headers", [])).get(b"user-agent", b"")
        if user_agent.startswith(b"Mozilla/"):
            response = Response(b"User agent not allowed\n", 403, media_type=TEXT, headers=NOSNIFF)
            await response(scope, receive, send_with_id)
            return
        await self.app(scope, receive, send_with_id)


class ToxiproxyApi:
    """Route handlers over one :class:`ProxyCollection` (state lives there, not here)."""

    def __init__(self, proxies: ProxyCollection, metrics: ProxyMetrics) -> None:
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
            Route("/metrics", e(self.metrics_text), methods=["GET"]),
        ]
        app = Starlette(
            routes=routes,
            middleware=[Middleware(ToxiproxyHeaders)],
            exception_handlers={404: _not_found, 405: _method_not_allowed},
        )
        app.router.redirect_slashes = False
        return app

    def _endpoint(self, handler: Handler) -> Handler:
        """Errors → Toxiproxy error bodies; past 25 s → an empty 503 (the work goes on)."""

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return _error(exc)
            except Exception as exc:
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(ApiError(str(exc) or type(exc).__name__, 500))

        async def run(request: Request) -> Response:
            task = asyncio.ensure_future(guarded(request))
            try:
                return await asyncio.wait_for(asyncio.shield(task), HANDLER_TIMEOUT)
            except TimeoutError:
                self._overdue.add(task)
                task.add_done_callback(self._overdue.discard)
                return Response(status_code=503)

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
        patch = codec.decode_toxic_patch(await request.body())
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
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)


async def _not_found(request: Request, exc: Exception) -> Response:
    return Response(b"404 page not found\n", 404, media_type=TEXT, headers=NOSNIFF)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return Response(status_code=405)
