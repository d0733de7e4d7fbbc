"""What an open stream or a phone holds for its whole life stays small, and still behaves.

The meters' per-request state (one object instead of closures), the seq
book's set (only for out-of-order events), specs sharing their set of field
names, no sign-in lock kept per phone, and the start-up heap frozen out of
the collector's way.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from typing import Any

import httpx
from progressbench.transports.http import _locks, sign_in

from progressbench.app.session import SessionSpec
from progressbench.core.reconnect import SeqBook
from progressbench.kit.meters import Meters
from progressbench.kit.runtime import freeze_startup_heap
from tests.unit.specs import session_spec


def _spec(index: int) -> SessionSpec:
    return session_spec(index, "sse", api="http://127.0.0.1:1", options={"phone_index": str(index)})


def test_the_meters_count_a_streams_bytes_both_ways_and_its_status() -> None:
    meters = Meters("api", 80)
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": b"hello", "more_body": False}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["body"] == b"hello"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"id: 1\n\n", b"id: 22\n\n"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    asyncio.run(meters.middleware(stream)({"type": "http", "path": "/s"}, receive, send))  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["http.response.start"] + ["http.response.body"] * 3
    assert meters.bytes_sent.labels("api")._value.get() == len(b"id: 1\n\nid: 22\n\n")
    assert meters.bytes_received.labels("api")._value.get() == 5
    assert meters.requests.labels("api", "http", "200")._value.get() == 1
    assert meters.in_flight.labels("api")._value.get() == 0 and meters.clock.in_flight == 0


def test_a_request_that_fails_before_its_response_is_counted_with_no_status() -> None:
    meters = Meters("api", 80)

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        try:
            await meters.middleware(broken)({"type": "http", "path": "/x"}, _never, _never)  # type: ignore[arg-type]
        except RuntimeError:
            pass

    asyncio.run(main())
    assert meters.requests.labels("api", "http", "none")._value.get() == 1
    assert meters.clock.in_flight == 0


def test_the_seq_book_holds_a_set_only_while_events_are_out_of_order() -> None:
    book = SeqBook()
    assert book.add(1) and book.add(2) and book.above is None, "in order: no set"
    assert book.add(5) and book.add(4) and book.above == {4, 5}
    assert not book.add(4) and book.seen(5) and not book.seen(3)
    assert (book.contiguous, book.highest) == (2, 5)
    assert book.add(3) and book.above is None and (book.contiguous, book.highest) == (5, 5)
    assert not book.add(3) and not book.seen(6)


def test_specs_share_their_set_of_field_names_and_a_copy_with_updates_gets_its_own() -> None:
    first, second = _spec(1), _spec(2)
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    names = set(first.model_fields_set)
    changed = first.model_copy(update={"seed": 99})
    assert changed.seed == 99 and changed.owner == "phone-1"
    assert first.model_fields_set == names == second.model_fields_set, "the shared set is untouched"
    assert SessionSpec.model_validate_json(first.model_dump_json()) == first
    assert first.model_dump(exclude_unset=True).keys() == names
    fewer = SessionSpec.model_validate({k: v for k, v in first.model_dump().items() if k != "options"})
    assert "options" not in fewer.model_fields_set and "options" in first.model_fields_set


def test_the_start_up_heap_is_frozen_out_of_collections() -> None:
    kept = [object() for _ in range(10)]  # something alive, tracked or not
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0 and kept


async def _never(*_: object) -> Any:  # pragma: no cover - never called
    raise AssertionError


def test_concurrent_sign_ins_of_one_phone_make_one_call_and_leave_no_lock_behind() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        body = {
            "access_token": "a",
            "refresh_token": "r",
            "expires_at": time.time() + 3600,
            "user": {"id": "u"},
        }
        return httpx.Response(200, json=body)

    async def main() -> None:
        transport = httpx.MockTransport(answer)
        async with httpx.AsyncClient(transport=transport, base_url="http://lean.test") as http:
            phone = f"lean-{uuid.uuid4().hex[:8]}"
            first, second = await asyncio.gather(
                sign_in(http, phone, lambda _: 0.0), sign_in(http, phone, lambda _: 0.0)
            )
            assert first is second and first.access_token == "a"
            assert not any(phone in key for key in _locks), "no lock kept once nobody signs in"

    asyncio.run(main())
    assert calls == ["/auth/v1/signup"], "the second caller waited for the first and reused its session"


def test_the_limits_and_the_raw_routes_hand_a_request_on_without_a_frame_of_their_own() -> None:
    """A GET with no body passes both limits and the raw routes as the next app's own awaitable
    (nothing of theirs is held for a stream's life); a body or a route still goes through
    their checks."""
    import re

    from progressbench.core.config import Limits
    from progressbench.kit.limits import BodyLimit, JobCreationLimit
    from progressbench.kit.rawroutes import RawRoute, RawRoutes

    marker: Any = object()

    def inner(scope: Any, receive: Any, send: Any) -> Any:
        return marker

    async def admit(scope: Any, groups: tuple[str, ...]) -> Any:  # pragma: no cover - not awaited
        raise AssertionError

    get = {"type": "http", "method": "GET", "path": "/sse/jobs/x/events", "headers": [(b"accept", b"*/*")]}
    chain = BodyLimit(JobCreationLimit(inner, Limits(), "secret"), max_body_bytes=10)
    assert chain(get, _never, _never) is marker
    assert (
        RawRoutes(inner, [RawRoute("GET", re.compile(r"/elsewhere"), admit)])(get, _never, _never) is marker
    )
    bodied = chain({**get, "method": "POST", "headers": [(b"content-length", b"3")]}, _never, _never)
    assert bodied is not marker and asyncio.iscoroutine(bodied), "a body is bounded in a frame of its own"
    bodied.close()
    routed = RawRoutes(inner, [RawRoute("GET", re.compile(r"/sse/jobs/([^/]+)/events"), admit)])(
        get, _never, _never
    )
    assert routed is not marker and asyncio.iscoroutine(routed)
    routed.close()
