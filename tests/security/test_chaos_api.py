"""Probe 7: the chaos proxy's API keeps listeners local, refuses non-finite numbers, and always lists.

Before the fixes a proxy could listen on ``0.0.0.0`` (which exposed the
embedded Postgres superuser beyond loopback) or on a privileged port; a
toxic with ``toxicity`` NaN or ``1e400`` was stored and then ``GET /proxies``
answered 500 until it was deleted; a proxy named with a ``/`` or 100 KB long
could never be deleted. Errors are Toxiproxy-shaped: ``{"error", "status"}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from progressbench.chaos.proxy.server import ChaosProxyServer

from tests.helpers import UNIT

UPSTREAM = "127.0.0.1:9"


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with ChaosProxyServer() as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10 * UNIT) as client:
            yield client


async def create(api: httpx.AsyncClient, name: str, listen: str) -> httpx.Response:
    return await api.post("/proxies", json={"name": name, "listen": listen, "upstream": UPSTREAM})


@pytest.mark.parametrize("listen", ["0.0.0.0:0", ":0", "[::]:0", "127.0.0.1:80"])
async def test_listeners_stay_on_loopback_and_unprivileged_ports(api: httpx.AsyncClient, listen: str) -> None:
    response = await create(api, "p", listen)
    assert response.status_code == 400, response.text
    assert "--allow-external-listen" in response.json()["error"]
    assert (await api.get("/proxies")).json() == {}


async def test_a_loopback_listener_is_created(api: httpx.AsyncClient) -> None:
    response = await create(api, "ok", "127.0.0.1:0")
    assert response.status_code == 201
    assert response.json()["listen"].startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("toxicity", "message"),
    [
        ("NaN", "bad request body: invalid character 'N' looking for beginning of value"),
        ("Infinity", "bad request body: invalid character 'I' looking for beginning of value"),
        (
            "1e400",
            "bad request body: json: cannot unmarshal number 1e400 into Go struct field "
            "ToxicWrapper.toxicity of type float32",
        ),
    ],
)
async def test_non_finite_toxicity_is_a_400_and_listing_still_works(
    api: httpx.AsyncClient, toxicity: str, message: str
) -> None:
    assert (await create(api, "p", "127.0.0.1:0")).status_code == 201
    body = '{"type": "latency", "toxicity": ' + toxicity + ', "attributes": {"latency": 10}}'
    response = await api.post("/proxies/p/toxics", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": message, "status": 400}
    patch = await api.post("/proxies/p/toxics", json={"type": "latency", "attributes": {"latency": 10}})
    assert patch.status_code == 200
    response = await api.patch(
        "/proxies/p/toxics/latency_downstream", content='{"toxicity": ' + toxicity + "}"
    )
    assert response.status_code == 400
    listing = await api.get("/proxies")
    assert listing.status_code == 200
    assert json.loads(listing.text)["p"]["toxics"][0]["toxicity"] == 1


async def test_a_huge_attribute_is_a_400(api: httpx.AsyncClient) -> None:
    assert (await create(api, "p", "127.0.0.1:0")).status_code == 201
    response = await api.post(
        "/proxies/p/toxics", content='{"type": "latency", "attributes": {"latency": 1e400}}'
    )
    assert response.status_code == 400
    assert (await api.get("/proxies")).status_code == 200


@pytest.mark.parametrize("name", ["a/b", "x" * 100_000, "tab\there"])
async def test_proxy_names_that_could_not_be_addressed_are_refused(api: httpx.AsyncClient, name: str) -> None:
    response = await create(api, name, "127.0.0.1:0")
    assert response.status_code == 400
    assert response.json()["error"].startswith("invalid proxy name")
    populate = await api.post(
        "/populate", json=[{"name": name, "upstream": UPSTREAM, "listen": "127.0.0.1:0"}]
    )
    assert populate.status_code == 400
    assert (await api.get("/proxies")).json() == {}
