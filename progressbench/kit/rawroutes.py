"""Long-lived routes served as plain ASGI apps, ahead of the framework's routing.

A request FastAPI serves carries, for as long as it is open, its router's
layers: the exception middleware's wrapper and its ``Request``, the
``AsyncExitStack`` middleware, the router's match, the route's
``request_response`` wrapper with its own ``Request`` and two more exit
stacks for dependencies, the solved parameters. For a JSON call that is
microseconds; an SSE stream holds it for minutes, and one API process holds
a thousand streams. Measured with tracemalloc in the API at 1,000 open
``sse`` streams, those layers were ~12 KB of Python heap per stream, about a
third of what a stream cost.

:class:`RawRoutes` is the innermost middleware of the API (inside the meters,
the limits and CORS, which every request still passes): a request whose path
matches a :class:`RawRoute` and whose method is the route's goes straight to
the route's app, with the path's groups; any other method on that path is
answered 405 as the framework answers it; everything else goes on to the
framework. A route's app refuses a request by raising
:class:`~starlette.exceptions.HTTPException` *before its first send* (it
checks first, then answers; it never raises one after) and the client gets
the same JSON body the API's handler gives (``{"detail": ...}`` with the exception's headers); any
other error reaches the framework's outer error middleware, as before.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: A raw route's admission: the request's scope and the path pattern's groups in, the ASGI app
#: that answers it out (or an HTTPException raised: the refusal).
RawAdmit = Callable[[Scope, tuple[str, ...]], Awaitable[ASGIApp]]


@dataclass(frozen=True, slots=True)
class RawRoute:
    """``method`` on paths that ``pattern`` matches whole, admitted by ``admit`` (see module doc)."""

    method: str
    pattern: re.Pattern[str]
    admit: RawAdmit


def error_response(exc: HTTPException) -> JSONResponse:
    """The API's answer to a refusal: the same body and headers its exception handler gives."""
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class RawRoutes:
    """ASGI middleware: matching requests go to their raw route's app, the rest to ``app``.

    A plain function that returns the awaitable to run, not a coroutine: it keeps no frame of
    its own for a request's life (a stream's is minutes, and a process holds a thousand), and
    the route is found before the request runs, so neither the loop over the routes nor the
    match outlives the lookup. A request for the framework runs as if this layer were absent.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[RawRoute]) -> None:
        self.app = app
        self.routes = tuple(routes)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http" and self.routes:
            path = scope["path"]
            for route in self.routes:
                match = route.pattern.fullmatch(path)
                if match is None:
                    continue
                if scope["method"] != route.method:
                    refusal = HTTPException(405, headers={"Allow": route.method})
                    return error_response(refusal)(scope, receive, send)
                return _serve(route.admit, match.groups(), scope, receive, send)
        return self.app(scope, receive, send)


async def _serve(
    admit: RawAdmit, groups: tuple[str, ...], scope: Scope, receive: Receive, send: Send
) -> None:
    """The route's answer once admitted, or its refusal as the API words it."""
    try:
        answer = await admit(scope, groups)
    except HTTPException as exc:
        await error_response(exc)(scope, receive, send)
        return
    await answer(scope, receive, send)
