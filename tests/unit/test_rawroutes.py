"""Raw ASGI routes ahead of the framework: who serves what, and refusals as the API words them."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.exceptions import HTTPException

from progressbench.kit.rawroutes import RawRoute, RawRoutes

EVENTS = re.compile(r"/things/([^/]+)/events")


class Recorder:
    """An ASGI ``send`` that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.messages if m["type"] == "http.response.start"))

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return dict(start["headers"])

    @property
    def body(self) -> Any:
        return json.loads(
            b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")
        )


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def serve(
    method: str, path: str, route_app: Any, kind: str = "http", refusal: HTTPException | None = None
) -> tuple[Recorder, list[str], list[Any]]:
    """One request through RawRoutes; what was sent, which app served it, the groups the route got.

    ``refusal``: what the route's admission raises instead of admitting the request."""
    served: list[str] = []
    groups: list[Any] = []

    async def framework(scope: Any, receive: Any, send: Any) -> None:
        served.append("framework")

    async def routed(scope: Any, found: tuple[str, ...]) -> Any:
        served.append("route")
        groups.append(found)
        if refusal is not None:
            raise refusal

        async def answer(scope: Any, receive: Any, send: Any) -> None:
            await route_app(send)

        return answer

    app = RawRoutes(framework, [RawRoute("GET", EVENTS, routed)])
    sent = Recorder()
    scope = {"type": kind, "method": method, "path": path, "headers": []}
    asyncio.run(app(scope, _receive, sent))  # type: ignore[arg-type]
    return sent, served, groups


async def _ok(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


def test_a_matching_get_goes_to_its_route_with_the_path_groups_and_the_rest_to_the_framework() -> None:
    sent, served, groups = serve("GET", "/things/abc/events", _ok)
    assert served == ["route"] and groups == [("abc",)] and sent.status == 200
    for path in ("/things/abc/events/more", "/things/a/b/events", "/things//events", "/things"):
        _sent, served, _ = serve("GET", path, _ok)
        assert served == ["framework"], path
    _sent, served, _ = serve("GET", "/things/abc/events", _ok, kind="websocket")
    assert served == ["framework"], "only http requests are routed here"


def test_another_method_on_a_route_path_is_refused_405_as_the_framework_would() -> None:
    for method in ("POST", "HEAD", "DELETE"):
        sent, served, _ = serve(method, "/things/abc/events", _ok)
        assert served == [], method
        assert sent.status == 405 and sent.body == {"detail": "Method Not Allowed"}
        assert sent.headers[b"allow"] == b"GET"


def test_a_refusal_raised_before_the_first_send_is_the_apis_json_error_with_its_headers() -> None:
    refusal = HTTPException(401, "no credentials", headers={"WWW-Authenticate": "Bearer"})
    sent, served, _ = serve("GET", "/things/abc/events", _ok, refusal=refusal)
    assert served == ["route"]
    assert sent.status == 401 and sent.body == {"detail": "no credentials"}
    assert sent.headers[b"www-authenticate"] == b"Bearer"
    assert sent.headers[b"content-type"] == b"application/json"
