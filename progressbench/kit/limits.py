"""Request bounds every HTTP service applies before a route runs (issue #13, probe 5).

Two ASGI middlewares:

* :class:`BodyLimit` answers 413 to a body larger than ``max_body_bytes``,
  from its ``Content-Length`` before anything is read, or, for a chunked
  body, as soon as the bytes received pass the bound.
* :class:`JobCreationLimit` answers 429 with ``Retry-After`` when one
  identity creates jobs faster than its token bucket allows. Job creation is
  ``POST /<transport>/jobs`` for every transport (``transports/README.md``),
  so the middleware needs no transport's name.

Who "one identity" is lives in :func:`identity` alone: the verified token's
subject when the request carries one, else the client's address.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from progressbench.core import identity as identity_tokens
from progressbench.core import tokens
from progressbench.core.config import Limits
from progressbench.core.limits import RateLimiter


def identity(scope: Scope, secret: str) -> str:
    """The rate-limit key of a request: ``sub:<subject>`` of a valid bearer token, else ``ip:<addr>``.

    The one place that decides who a caller is for limiting: a signed-in user's access token (what
    job creation takes) or a job's read token; anything unverifiable counts against its address.
    """
    headers = dict(scope.get("headers") or [])
    raw = headers.get(b"authorization")
    if raw:
        subject = _subject(raw.decode("latin-1"), secret)
        if subject is not None:
            return "sub:" + subject
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


def _subject(header: str, secret: str) -> str | None:
    """Whom a bearer token speaks for, if it verifies: a user's access token, else a job's read token."""
    try:
        bearer = tokens.bearer(header)
    except tokens.TokenRejected:
        return None
    try:
        return str(identity_tokens.verify_access(secret, bearer).id)
    except (tokens.TokenRejected, ValueError):
        pass
    try:
        return tokens.decode(secret, bearer).owner
    except (tokens.TokenRejected, ValueError):
        return None


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: A request carries a body only with one of these (RFC 9112 section 6.3); the names come lowercased.
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """A request with no body to bound (no ``Content-Length``, not chunked: every GET) goes on
        as if this layer were absent: it keeps no frame of its own for the request's life (an SSE
        stream's is minutes)."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        headers = scope.get("headers") or []
        if not any(name in _BODY_HEADERS for name, _ in headers):
            return self.app(scope, receive, send)
        return self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        detail = f"request body larger than {limit} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _answer(send, 413 if length.isdigit() else 400, detail, [(b"connection", b"close")])
            return
        if length is not None or b"chunked" not in dict(scope.get("headers") or []).get(
            b"transfer-encoding", b""
        ):
            await self.app(scope, receive, send)
            return
        # A chunked body: read it here, within the bound, then hand it on in one piece (a route's
        # own body parser would turn an error raised mid-read into a 400).
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _answer(send, 413, detail, [(b"connection", b"close")])
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class JobCreationLimit:
    def __init__(
        self,
        app: ASGIApp,
        limits: Limits,
        secret: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.secret = secret
        self.clock = clock
        self.limiter = RateLimiter(limits.job_creations_per_s, limits.job_creation_burst)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The request goes on, or the 429; a plain function (no frame kept for a request's life)."""
        if scope["type"] == "http" and scope["method"] == "POST" and _creates_job(scope["path"]):
            wait = self.limiter.take(identity(scope, self.secret), self.clock())
            if wait > 0:
                retry = str(max(math.ceil(wait), 1)).encode()
                return _answer(send, 429, "too many jobs created; retry later", [(b"retry-after", retry)])
        return self.app(scope, receive, send)


def _creates_job(path: str) -> bool:
    parts = path.strip("/").split("/")
    return len(parts) == 2 and parts[1] == "jobs"
