"""Probes 5 and 8: bounded job shapes, bodies and job creation; 422 (not 500) for bad numbers.

Before the fixes: a 30 KB POST created a 1,000 × 1,000-step job; ``waves: []``,
``step_seconds_max: 1e309`` (JSON that parses to infinity) answered 500, and so
did a rooms publish with ``seq: 1e400``; nothing bounded a body or how fast
one client could create jobs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from progressbench.transports.relay.rooms.config import RoomsConfig
from progressbench.transports.relay.rooms.connection import connection_class
from progressbench.transports.relay.rooms.http11 import MAX_PUBLISH_BYTES
from progressbench.transports.relay.rooms.hub import RoomHub
from progressbench.transports.relay.rooms.meters import RoomMeters
from pydantic import ValidationError
from websockets.asyncio.server import serve

from progressbench.app.supervisor import Stack
from progressbench.core import identity
from progressbench.core.config import MAX_TOTAL_STEPS, JobShape, Limits
from progressbench.core.limits import RateLimiter
from progressbench.kit.meters import Meters
from tests.helpers import UNIT
from tests.integration.api_client import auth
from tests.integration.conftest import running_stack

SECRET = "s" * 32
SERVICE_SECRET = "v" * 32


@pytest.mark.parametrize(
    "shape",
    [
        {"waves": []},
        {"step_seconds_max": float("inf")},
        {"step_seconds_min": float("nan")},
        {"step_seconds_max": 1e6},
        {"waves": [{"label": "w", "items": 1000}] * 2},
        {"waves": [{"label": "x" * 10_000, "items": 1}]},
    ],
)
def test_job_shapes_are_bounded(shape: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobShape.model_validate(shape)


def test_the_default_and_the_largest_allowed_shape_pass() -> None:
    assert JobShape().total_steps == 14
    big = JobShape.model_validate({"waves": [{"label": "w", "items": MAX_TOTAL_STEPS}]})
    assert big.total_steps == MAX_TOTAL_STEPS


def test_rate_limiter_refills_and_says_how_long_to_wait() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 0.0) == pytest.approx(0.5)
    assert limiter.take("b", 0.0) == 0.0  # another identity has its own bucket
    assert limiter.take("a", 0.5) == 0.0


def test_rate_limiter_table_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=10)
    for i in range(100):
        limiter.take(f"k{i}", float(i) * 0.001)
    assert len(limiter) <= 10


# ----------------------------------------------------------------- a real API


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    limits = Limits(job_creation_burst=3, job_creations_per_s=0.01)
    with running_stack(tmp_path_factory.mktemp("bounds"), module_database_url, limits=limits) as stack:
        yield stack


def post_raw(
    stack: Stack, body: bytes, path: str = "/polling/jobs", source: str = "127.0.0.9", user: str = "alice"
) -> httpx.Response:
    """POST as the signed-in test ``user`` (the limiter's identity) from the loopback address ``source``."""
    api = stack.endpoints()["api"]
    headers = {"content-type": "application/json", **auth(api, user)}
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10 * UNIT) as client:
        return client.post(api + path, content=body, headers=headers)


@pytest.mark.integration
@pytest.mark.parametrize(
    "body",
    [
        b'{"shape":{"waves":[]}}',
        b'{"shape":{"step_seconds_max":1e309}}',
        b'{"shape":{"waves":[' + b",".join([b'{"label":"w","items":1000}'] * 20) + b"]}}",
        b'{"seed":1' + b"0" * 40 + b"}",
    ],
    ids=["no-waves", "infinity", "million-steps", "huge-seed"],
)
def test_bad_shapes_get_422_not_500(api: Stack, body: bytes, request: pytest.FixtureRequest) -> None:
    source = f"127.0.1.{len(request.node.callspec.id)}"
    response = post_raw(api, body, source=source, user=f"shaper-{request.node.callspec.id}")
    assert response.status_code == 422, response.text


@pytest.mark.integration
def test_a_large_body_gets_413(api: Stack) -> None:
    body = json.dumps({"owner": "alice", "pad": "x" * 100_000}).encode()
    assert post_raw(api, body, source="127.0.0.4").status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"owner":"alice","pad":"'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    url = api.endpoints()["api"] + "/polling/jobs"
    response = httpx.post(url, content=chunks(), timeout=10 * UNIT)  # chunked: no Content-Length
    assert response.status_code == 413


@pytest.mark.integration
def test_job_creation_is_rate_limited_per_identity(api: Stack) -> None:
    """After the burst, 429 with a Retry-After; the bucket here refills one job per 100 s.

    The identity is the verified user: another user from the same address has a bucket of its own.
    """
    statuses = []
    for _ in range(5):
        response = post_raw(api, b'{"time_scale":0.05}', "/sse/jobs", "127.0.0.2", user="mallory")
        statuses.append(response.status_code)
    assert statuses[:3] == [202, 202, 202]
    assert statuses[3:] == [429, 429]
    assert int(response.headers["retry-after"]) >= 1
    other = post_raw(api, b'{"time_scale":0.05}', "/sse/jobs", "127.0.0.2", user="carol")
    assert other.status_code == 202


# ----------------------------------------------------------------- rooms


@pytest.fixture
async def rooms() -> AsyncIterator[tuple[str, int]]:
    hub = RoomHub(SECRET, RoomsConfig(), RoomMeters(Meters("rooms", 1)), service_secret=SERVICE_SECRET)
    async with serve(
        hub.handler,
        "127.0.0.1",
        0,
        process_request=hub.admit,
        create_connection=connection_class(hub.publish),
        max_size=MAX_PUBLISH_BYTES,
        close_timeout=1.0,
    ) as server:
        yield next(iter(server.sockets)).getsockname()[:2]


@pytest.mark.parametrize("seq", [b"1e400", b"-1e400", b"1.5", b"true", b"-3"])
async def test_rooms_publish_with_a_bad_seq_gets_422(rooms: tuple[str, int], seq: bytes) -> None:
    job = uuid.uuid4()
    token = identity.issue_service(SERVICE_SECRET, "rooms")
    body = b'{"seq": ' + seq + b', "kind": "step"}'
    request = (
        f"POST /parties/main/{job} HTTP/1.1\r\nHost: rooms\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(*rooms)
    try:
        writer.write(request)
        raw = await asyncio.wait_for(reader.read(), 10 * UNIT)
    finally:
        writer.close()
    assert raw.split(b" ")[1] == b"422", raw
