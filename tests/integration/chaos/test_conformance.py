"""Toxiproxy conformance on real sockets, driven through progressbench.chaos.client (toxiproxy-python).

Every test runs twice: against the project's chaos proxy and against a real
Toxiproxy 2.12 binary (``TOXIPROXY_BIN`` or ``toxiproxy-server`` on PATH;
skipped with that reason when there is none), so the behaviour pinned here
is the real program's. Where the chaos proxy differs on purpose (its extra
toxic types, live metric counters, loopback-only listeners), the test says so.

Timing tolerances are generous so that the suite holds on a loaded 2-core
machine: a toxic's delay must show up at least in full (minus 20 ms of
timer slop) and at most 500 ms late; throughput within -20 %/+100 % of the
configured rate. The only wire-level test talks raw HTTP (httpx) because it
pins exact status codes, headers and bodies.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from progressbench.chaos.client import AsyncProxyControl, ProxyControl, ProxyInfo, ToxicSpec
from prometheus_client.parser import text_string_to_metric_families

from progressbench.core.errors import ChaosError, UnsupportedToxic
from tests.helpers import UNIT, wait_until
from tests.integration.chaos.conftest import managed_control
from tests.integration.chaos.proxy_harness import (
    Clients,
    Servers,
    echo,
    outcome,
    round_trip,
    unique,
)
from tests.integration.chaos.proxy_process import start_proxy_process, stop_proxy_process
from tests.integration.chaos.toxiproxy_process import (
    missing_reason,
    start_toxiproxy,
    stop_toxiproxy,
    toxiproxy_binary,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SLOP = 0.02  # timers may fire this early relative to our clock reads
LATE = 0.5  # how late a delayed delivery may be under load


CHAOS_PROXY, TOXIPROXY = "chaos-proxy", "toxiproxy"


@pytest.fixture(params=[CHAOS_PROXY, TOXIPROXY])
def implementation(request: pytest.FixtureRequest) -> str:
    """Which server the test drives: the project's proxy or a real Toxiproxy."""
    return str(request.param)


@pytest.fixture
def server_url(request: pytest.FixtureRequest, implementation: str) -> str:
    return str(request.getfixturevalue("chaos_url" if implementation == CHAOS_PROXY else "toxiproxy_url"))


@pytest.fixture
def control(server_url: str) -> Iterator[ProxyControl]:
    """The adapter on the server under test; afterwards it is reset and every proxy deleted."""
    yield from managed_control(server_url)


async def echo_proxy(actl: AsyncProxyControl, servers: Servers) -> ProxyInfo:
    return await actl.create_proxy(unique("echo"), await servers.start(echo))


# -- API -------------------------------------------------------------------------


def test_wire_format_status_codes_and_errors(control: ProxyControl) -> None:
    """Exact Toxiproxy 2.12 shapes: 201/200/204/404/405/409/400/403, bodies and headers."""
    name = unique("wire")
    with httpx.Client(base_url=control.url, timeout=10 * UNIT) as http:
        version = http.get("/version")
        assert version.status_code == 200
        assert version.text == '{"version": "2.12.0"}\n'
        assert version.headers["content-type"] == "application/json;charset=utf-8"
        assert len(version.headers["x-toxiproxy-request-id"]) == 20

        body = {"name": name, "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}
        created = http.post("/proxies", json=body)
        assert created.status_code == 201
        assert list(created.json()) == [
            "name", "listen", "upstream", "enabled", "Logger", "toxics",
        ]  # fmt: skip
        assert created.json()["enabled"] is True and created.json()["Logger"] == {}
        assert created.json()["listen"].startswith("127.0.0.1:")

        duplicate = http.post("/proxies", json=body)
        assert duplicate.status_code == 409
        assert duplicate.text == '{"error":"proxy already exists","status":409}\n'
        assert duplicate.headers["content-type"] == "text/plain; charset=utf-8"

        missing = http.post("/proxies", json={"name": unique("x")})
        assert (missing.status_code, missing.json()["error"]) == (
            400,
            "missing required field: upstream",
        )
        assert http.get("/proxies/nope").json() == {"error": "proxy not found", "status": 404}

        toxic = http.post(f"/proxies/{name}/toxics", json={"type": "latency"})
        assert toxic.status_code == 200
        assert toxic.text == (
            '{"attributes":{"latency":0,"jitter":0},"name":"latency_downstream",'
            '"type":"latency","stream":"downstream","toxicity":1}'
        )
        clash = http.post(
            f"/proxies/{name}/toxics",
            json={"type": "bandwidth", "name": "latency_downstream", "stream": "upstream"},
        )
        assert clash.status_code == 409 and clash.json()["error"] == "toxic already exists"
        bad_type = http.post(f"/proxies/{name}/toxics", json={"type": "nope"})
        assert (bad_type.status_code, bad_type.json()["error"]) == (400, "invalid toxic type")
        bad_stream = http.post(f"/proxies/{name}/toxics", json={"type": "noop", "stream": "x"})
        assert bad_stream.json()["error"] == ("stream was invalid, can be either upstream or downstream")
        up = http.post(f"/proxies/{name}/toxics", json={"type": "slicer", "stream": "UPSTREAM"})
        assert up.json()["name"] == "slicer_UPSTREAM"
        listed = http.get(f"/proxies/{name}/toxics").json()
        assert [t["name"] for t in listed] == ["slicer_UPSTREAM", "latency_downstream"]

        patched = http.patch(
            f"/proxies/{name}/toxics/latency_downstream",
            json={"attributes": {"latency": 50}, "toxicity": 0.5, "type": "ignored"},
        )
        assert patched.json()["attributes"] == {"latency": 50, "jitter": 0}
        assert patched.json()["toxicity"] == 0.5 and patched.json()["type"] == "latency"

        deleted = http.delete(f"/proxies/{name}/toxics/latency_downstream")
        assert (deleted.status_code, deleted.content) == (204, b"")
        assert http.get(f"/proxies/{name}/toxics/latency_downstream").status_code == 404

        trailing = http.get("/proxies/")
        assert (trailing.status_code, trailing.text) == (404, "404 page not found\n")
        wrong_method = http.put("/proxies")
        assert wrong_method.status_code == 405 and wrong_method.content == b""
        assert "content-type" not in wrong_method.headers and "allow" not in wrong_method.headers
        browser = http.get("/version", headers={"User-Agent": "Mozilla/5.0"})
        assert (browser.status_code, browser.text) == (403, "User agent not allowed\n")

        listing = http.get("/proxies").json()
        assert name in listing and listing[name]["toxics"][0]["name"] == "slicer_UPSTREAM"
        populate = http.post("/populate", json=[{"name": unique("p")}])
        assert populate.status_code == 400
        assert populate.headers["content-type"] == "application/json"
        assert populate.json() == {
            "error": "missing required field: upstream at proxy 1",
            "status": 400,
            "proxies": None,
        }
        assert http.delete(f"/proxies/{name}").status_code == 204
        metrics = http.get("/metrics")  # both servers run with proxy metrics on
        assert metrics.status_code == 200
        assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_proxy_created_without_listen_gets_a_random_port(control: ProxyControl, implementation: str) -> None:
    """No ``listen`` (or ``""``): 201 and a random port that accepts connections on loopback.
    Toxiproxy binds every interface (``[::]:port``); the chaos proxy binds 127.0.0.1 on purpose."""
    with httpx.Client(base_url=control.url, timeout=10 * UNIT) as http:
        for body in ({"name": unique("nl"), "upstream": "127.0.0.1:9"}, {"name": unique("el"), "listen": ""}):
            body.setdefault("upstream", "127.0.0.1:9")
            created = http.post("/proxies", json=body)
            assert created.status_code == 201, created.text
            host, _, port = created.json()["listen"].rpartition(":")
            assert host == ("127.0.0.1" if implementation == CHAOS_PROXY else "[::]")
            assert int(port) > 0
            with socket.create_connection(("127.0.0.1", int(port)), timeout=5 * UNIT):
                pass


def test_router_level_answers_carry_no_request_id(control: ProxyControl) -> None:
    """What the router answers itself (301 to a cleaned path, 404, 405, HEAD) has no
    ``X-Toxiproxy-Request-Id`` and no browser guard; matched routes have both."""
    with httpx.Client(base_url=control.url, timeout=10 * UNIT) as http:
        for method, path in (
            ("GET", "/nope"),
            ("GET", "/proxies/"),
            ("PUT", "/proxies"),
            ("HEAD", "/version"),
        ):
            response = http.request(method, path)
            assert response.status_code in (404, 405), (method, path)
            assert "x-toxiproxy-request-id" not in response.headers, (method, path)
        browser = http.get("/nope", headers={"User-Agent": "Mozilla/5.0"})
        assert browser.status_code == 404 and "x-toxiproxy-request-id" not in browser.headers
        guarded = http.get("/proxies", headers={"User-Agent": "Mozilla/5.0"})
        assert guarded.status_code == 403 and "x-toxiproxy-request-id" in guarded.headers
        # A path with an encoded slash decodes to "/proxies//", which the router cleans.
        redirect = http.get("/proxies/%2F?x=1")
        assert (redirect.status_code, redirect.headers["location"]) == (301, "/proxies/?x=1")
        assert redirect.content == b"" and "x-toxiproxy-request-id" not in redirect.headers


NOTE = "bad request body: json: cannot unmarshal"
POPULATE_ITEM = 'struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
TOXIC_PATCH = (
    'struct { Attributes interface {} "json:\\"attributes\\""; Toxicity float32 "json:\\"toxicity\\"" }'
)
#: (method, path under /proxies/{p}, body, status, error text), as a real Toxiproxy 2.12 answers.
GO_ERRORS = [
    ("POST", "", b'{"name":"z" "upstream":"b"}', 400, "bad request body: invalid character '\"' after object key:value pair"),  # noqa: E501
    ("POST", "", b'{"name":"z",}', 400, "bad request body: invalid character '}' looking for beginning of object key string"),  # noqa: E501
    ("POST", "", b'{"enabled":tru}', 400, "bad request body: invalid character '}' in literal true (expecting 'e')"),  # noqa: E501
    ("POST", "", b'{"name":"\\x"}', 400, "bad request body: invalid character 'x' in string escape code"),
    ("POST", "", b"[1 2]", 400, "bad request body: invalid character '2' after array element"),
    ("POST", "", b"1.e", 400, "bad request body: invalid character 'e' after decimal point in numeric literal"),  # noqa: E501
    ("POST", "", b"tru", 400, "bad request body: unexpected EOF"),
    ("POST", "", b"null", 400, "missing required field: name"),
    ("POST", "", b'{"upstream":5,"name":1}', 400, f"{NOTE} number into Go struct field Proxy.upstream of type string"),  # noqa: E501
    ("POST", "", b'{"name":"a","upstream":"b","listen":1e400}', 400, f"{NOTE} number into Go struct field Proxy.listen of type string"),  # noqa: E501
    ("POST", "", b'{"name":"a","upstream":"b","listen":"127.0.0.1:x"}', 500, "listen tcp: address tcp/x: unknown port"),  # noqa: E501
    ("POST", "/toxics", b"null", 400, "invalid toxic type"),
    ("POST", "/toxics", b'{"type":5,"toxicity":"x"}', 400, f"{NOTE} number into Go struct field ToxicWrapper.type of type string"),  # noqa: E501
    ("POST", "/toxics", b'{"type":"latency","attributes":[1]}', 400, f"{NOTE} array into Go struct field ToxicWrapper.attributes of type toxics.NoopToxic"),  # noqa: E501
    ("POST", "/toxics", b'{"type":"latency","attributes":{"latency":9223372036854775808}}', 400, f"{NOTE} number 9223372036854775808 into Go struct field LatencyToxic.attributes.latency of type int64"),  # noqa: E501
    ("POST", "/toxics", b'{"type":"slicer","attributes":{"delay":1.0}}', 400, f"{NOTE} number 1.0 into Go struct field SlicerToxic.attributes.delay of type int"),  # noqa: E501
    ("PATCH", "/toxics/t", b'{"attributes":[1],"toxicity":"x"}', 400, f"{NOTE} array into Go struct field .attributes of type toxics.LatencyToxic"),  # noqa: E501
    ("PATCH", "/toxics/t", b'{"toxicity":"x","attributes":[1]}', 400, f"{NOTE} string into Go struct field .toxicity of type float32"),  # noqa: E501
    ("PATCH", "/toxics/t", b"[]", 400, f"{NOTE} array into Go value of type {TOXIC_PATCH}"),
    ("PATCH", "/toxics/ghost", b"{", 404, "toxic not found"),
]  # fmt: skip
POPULATE_ERRORS = [
    (b"{}", f"{NOTE} object into Go value of type []{POPULATE_ITEM}"),
    (b'[{"name":"a","upstream":"b"},5]', f"{NOTE} number into Go value of type {POPULATE_ITEM}"),
    (
        b'[{"name":"p","upstream":"u","enabled":"no"}]',
        f"{NOTE} string into Go struct field .enabled of type bool",
    ),
    (b'[{"name":1,"upstream":7}]', f"{NOTE} number into Go struct field .name of type string"),
]


def test_go_json_error_texts(control: ProxyControl) -> None:
    """Bad bodies get Go's ``encoding/json`` words (syntax, type mismatch, null), in Go's order."""
    name = unique("go")
    control.create_proxy(name, "127.0.0.1:9")
    control.add_toxic(name, ToxicSpec("latency", name="t"))
    with httpx.Client(base_url=control.url, timeout=10 * UNIT) as http:
        for method, path, body, status, error in GO_ERRORS:
            url = "/proxies" if method == "POST" and path == "" else f"/proxies/{name}{path}"
            response = http.request(method, url, content=body)
            assert (response.status_code, response.json()["error"]) == (status, error), body
        for body, error in POPULATE_ERRORS:
            response = http.post("/populate", content=body)
            assert response.json() == {"error": error, "status": 400, "proxies": None}, body
        empty = http.post("/populate", content=b"null")
        assert (empty.status_code, empty.text) == (201, '{"proxies":null}')
        unchanged = http.patch(f"/proxies/{name}/toxics/t", content=b"null")
        assert unchanged.status_code == 200 and unchanged.json()["name"] == "t"


@pytest.mark.parametrize(
    ("flags", "served"),
    [((), False), (("proxy",), True), (("runtime",), True)],
    ids=["default", "proxy-metrics", "runtime-metrics"],
)
def test_metrics_exist_only_when_switched_on(
    implementation: str, tmp_path: Path, flags: tuple[str, ...], served: bool
) -> None:
    """``/metrics`` is a 404 unless proxy or runtime metrics are on; then any method gets it."""
    if implementation == CHAOS_PROXY:
        args = [f"--{flag}-metrics" for flag in flags]
        process, url = start_proxy_process("--port", "0", *args, log_path=tmp_path / "log")
        stop = stop_proxy_process
    else:
        binary = toxiproxy_binary()
        if binary is None:
            pytest.skip(missing_reason())
        process, url = start_toxiproxy(
            binary, *(f"-{flag}-metrics" for flag in flags), log_path=tmp_path / "log"
        )
        stop = stop_toxiproxy
    try:
        for method in ("GET", "POST"):
            response = httpx.request(method, f"{url}/metrics", timeout=10 * UNIT)
            assert response.status_code == (200 if served else 404), method
    finally:
        assert stop(process) == 0


def test_adapter_translates_errors(control: ProxyControl, implementation: str) -> None:
    """ChaosError for conflicts and missing things; UnsupportedToxic for unknown types."""
    proxy = control.create_proxy(unique("err"), "127.0.0.1:9")
    with pytest.raises(ChaosError, match="proxy already exists"):
        control.create_proxy(proxy.name, "127.0.0.1:9")
    with pytest.raises(ChaosError, match="toxic not found"):
        control.remove_toxic(proxy.name, "ghost")
    control.remove_toxic(proxy.name, "ghost", missing_ok=True)
    with pytest.raises(UnsupportedToxic, match="'warp'"):
        control.add_toxic(proxy.name, ToxicSpec(type="warp"))
    with pytest.raises(ChaosError, match="listen tcp: address 99999: invalid port"):
        control.create_proxy(unique("bad"), "127.0.0.1:9", listen="127.0.0.1:99999")
    mobile = implementation == CHAOS_PROXY  # the chaos proxy's extra toxics
    assert control.supports("blackhole") is mobile and control.supports("idle_timeout") is mobile
    assert not control.supports("warp")
    assert control.version() == "2.12.0"


def test_adapter_unreachable_server_is_a_chaos_error(servers: Servers) -> None:
    """A server that is not there gives ChaosError naming the URL, not a requests error."""
    url = f"http://{servers.closed_port()}"
    with pytest.raises(ChaosError, match="unreachable"):
        ProxyControl(url, timeout=2).version()
    assert not ProxyControl(url, timeout=2).ping()


def test_toxic_context_manager_removes_on_failure(control: ProxyControl) -> None:
    """`toxic()` removes its toxic in finally, also when the block raises."""
    proxy = control.create_proxy(unique("ctx"), "127.0.0.1:9")
    with pytest.raises(RuntimeError), control.toxic(proxy.name, ToxicSpec("latency")) as info:
        assert [t.name for t in control.toxics(proxy.name)] == [info.name]
        raise RuntimeError("boom")
    assert control.toxics(proxy.name) == []


def test_update_toxic_and_populate_through_the_adapter(control: ProxyControl) -> None:
    """update_toxic merges attributes; populate keeps an unchanged proxy and its toxics."""
    proxy = control.create_proxy(unique("pop"), "127.0.0.1:9")
    control.add_toxic(proxy.name, ToxicSpec("latency", attributes={"latency": 10, "jitter": 2}))
    updated = control.update_toxic(proxy.name, "latency_downstream", attributes={"latency": 99})
    assert updated.attributes == {"latency": 99, "jitter": 2}
    again = control.populate([{"name": proxy.name, "listen": proxy.listen, "upstream": "127.0.0.1:9"}])
    assert again[0].port == proxy.port
    assert [t.name for t in control.toxics(proxy.name)] == ["latency_downstream"]
    replaced = control.populate([{"name": proxy.name, "listen": proxy.listen, "upstream": "127.0.0.1:8"}])
    assert replaced[0].upstream == "127.0.0.1:8" and control.toxics(proxy.name) == []


# -- data plane ---------------------------------------------------------------------


async def test_latency_adds_round_trip_delay(actl, servers, clients: Clients) -> None:
    """Downstream 200 ms + upstream 100 ms latency add ~300 ms to a round trip."""
    proxy = await echo_proxy(actl, servers)
    reader, writer = await clients.open(proxy)
    base = await round_trip(reader, writer, b"x" * 64, 5)
    await actl.add_toxic(proxy.name, ToxicSpec("latency", attributes={"latency": 200}))
    assert 0.2 - SLOP <= await round_trip(reader, writer, b"y" * 64, 5) <= 0.2 + base + LATE
    await actl.add_toxic(proxy.name, ToxicSpec("latency", stream="upstream", attributes={"latency": 100}))
    assert 0.3 - SLOP <= await round_trip(reader, writer, b"z" * 64, 5) <= 0.3 + base + LATE


async def test_latency_is_pipelined_not_serialized(actl, servers, clients: Clients) -> None:
    """Five messages 50 ms apart under 300 ms latency arrive ~50 ms apart, not 300 ms apart."""
    proxy = await echo_proxy(actl, servers)
    reader, writer = await clients.open(proxy)
    await actl.add_toxic(proxy.name, ToxicSpec("latency", attributes={"latency": 300}))
    await round_trip(reader, writer, b"warm", 5)
    started = time.monotonic()
    arrivals: list[float] = []

    async def receive() -> None:
        got = 0
        while got < 5:
            got += len(await reader.read(100))
            arrivals.append(time.monotonic() - started)

    receiver = asyncio.create_task(receive())
    for i in range(5):
        writer.write(str(i).encode())
        await asyncio.sleep(0.05)  # the send cadence under test, not a wait for a condition
    await asyncio.wait_for(receiver, 10 * UNIT)
    assert arrivals[0] >= 0.3 - SLOP
    # Pipelined: the last arrives ~0.5 s after the first send; serialized it would be >= 1.5 s.
    assert arrivals[-1] <= 1.0


async def test_toxicity_zero_has_no_effect(actl, servers, clients: Clients) -> None:
    """A toxic with toxicity 0 behaves as noop on every connection."""
    proxy = await echo_proxy(actl, servers)
    await actl.add_toxic(proxy.name, ToxicSpec("latency", toxicity=0.0, attributes={"latency": 1000}))
    reader, writer = await clients.open(proxy)
    assert await round_trip(reader, writer, b"fast", 5) < 0.5


async def test_bandwidth_caps_throughput(actl, servers, clients: Clients) -> None:
    """300 KB through a 200 KB/s (KB = 1000 B) downstream cap takes about 1.5 s."""
    payload = bytes(range(256)) * 1172  # 300,032 bytes

    async def blast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        writer.write(payload)
        await writer.drain()
        await reader.read()

    proxy = await actl.create_proxy(unique("bw"), await servers.start(blast))
    await actl.add_toxic(proxy.name, ToxicSpec("bandwidth", attributes={"rate": 200}))
    reader, writer = await clients.open(proxy)
    started = time.monotonic()
    writer.write(b"go")
    received = await asyncio.wait_for(reader.readexactly(len(payload)), 10 * UNIT)
    elapsed = time.monotonic() - started
    assert received == payload
    assert 1.5 * 0.8 <= elapsed <= 1.5 * 2


async def test_reset_peer_gives_rst_and_normal_close_gives_fin(actl, servers, clients: Clients) -> None:
    """Server close → client EOF; with reset_peer (present at connect) → ECONNRESET."""

    async def hello_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()

    proxy = await actl.create_proxy(unique("rst"), await servers.start(hello_bye))
    reader, _ = await clients.open(proxy)
    assert await outcome(reader, 5) == ("eof", b"bye")

    await actl.add_toxic(proxy.name, ToxicSpec("reset_peer", attributes={"timeout": 0}))
    reader, _ = await clients.open(proxy)
    assert await outcome(reader, 5) == ("reset", b"")


async def test_limit_data_passes_exact_byte_count(actl, servers, clients: Clients) -> None:
    """limit_data 10 downstream: the client gets exactly 10 bytes, then EOF."""

    async def chatter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"0123456789abcdefghij" * 5)
        await writer.drain()
        await reader.read()

    proxy = await actl.create_proxy(unique("limit"), await servers.start(chatter))
    await actl.add_toxic(proxy.name, ToxicSpec("limit_data", attributes={"bytes": 10}))
    reader, _ = await clients.open(proxy)
    assert await outcome(reader, 5) == ("eof", b"0123456789")


async def test_slow_close_delays_only_the_fin(actl, servers, clients: Clients) -> None:
    """slow_close 500: data arrives at once, EOF about 500 ms later."""

    async def bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()

    proxy = await actl.create_proxy(unique("slow"), await servers.start(bye))
    await actl.add_toxic(proxy.name, ToxicSpec("slow_close", attributes={"delay": 500}))
    reader, _ = await clients.open(proxy)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(10), 5 * UNIT) == b"bye"
    assert time.monotonic() - started < 0.4
    assert await outcome(reader, 5) == ("eof", b"")
    assert 0.5 - SLOP <= time.monotonic() - started <= 0.5 + LATE


async def test_timeout_zero_drops_data_and_keeps_the_connection(actl, servers, clients: Clients) -> None:
    """timeout 0 upstream: bytes vanish, nothing closes; removing it closes the connection."""
    proxy = await echo_proxy(actl, servers)
    reader, writer = await clients.open(proxy)
    await round_trip(reader, writer, b"before", 5)
    await actl.add_toxic(proxy.name, ToxicSpec("timeout", stream="upstream", attributes={"timeout": 0}))
    writer.write(b"dropped")
    assert await outcome(reader, 0.5) == ("timeout", b"")
    removed_at = time.monotonic()
    await actl.remove_toxic(proxy.name, "timeout_upstream")
    assert await outcome(reader, 5) == ("eof", b"")
    assert time.monotonic() - removed_at < 1.0


async def test_timeout_closes_after_idle_and_traffic_postpones_it(actl, servers, clients: Clients) -> None:
    """timeout 800: with ticks every 150 ms for 0.9 s the connection lives on, then closes
    ~0.8 s after the last tick; the ticks themselves are dropped."""

    async def ticker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(7):
            writer.write(b"tick")
            await writer.drain()
            await asyncio.sleep(0.15)  # the server's cadence
        await reader.read()

    proxy = await actl.create_proxy(unique("idle"), await servers.start(ticker))
    await actl.add_toxic(proxy.name, ToxicSpec("timeout", attributes={"timeout": 800}))
    started = time.monotonic()
    reader, _ = await clients.open(proxy)
    assert await outcome(reader, 10) == ("eof", b"")
    elapsed = time.monotonic() - started
    assert 0.9 + 0.8 - SLOP <= elapsed <= 1.05 + 0.8 + LATE


async def test_disable_closes_connections_and_refuses_new_ones(actl, servers, clients: Clients) -> None:
    """enabled:false → existing connections get EOF, new connects ECONNREFUSED; re-enable works."""
    proxy = await echo_proxy(actl, servers)
    reader, writer = await clients.open(proxy)
    await round_trip(reader, writer, b"hi", 5)
    await actl.set_enabled(proxy.name, False)
    assert await outcome(reader, 5) == ("eof", b"")
    with pytest.raises(ConnectionRefusedError):
        await clients.open(proxy)
    again = await actl.set_enabled(proxy.name, True)
    assert again.port == proxy.port
    reader, writer = await clients.open(proxy)
    assert await round_trip(reader, writer, b"back", 5) < 1


async def test_patch_upstream_restarts_the_proxy_but_keeps_toxics(actl, servers, clients: Clients) -> None:
    """PATCH with a new upstream closes live connections, keeps the toxics, and new
    connections reach the new upstream; DELETE closes connections too."""

    async def tag(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"second")
        await writer.drain()
        await reader.read()

    proxy = await echo_proxy(actl, servers)
    second = await servers.start(tag)
    await actl.add_toxic(proxy.name, ToxicSpec("noop"))
    reader, writer = await clients.open(proxy)
    await round_trip(reader, writer, b"first", 5)
    async with httpx.AsyncClient(base_url=actl.url) as http:
        response = await http.patch(f"/proxies/{proxy.name}", json={"upstream": second})
    assert response.status_code == 200 and response.json()["upstream"] == second
    assert response.json()["listen"] == proxy.listen
    assert await outcome(reader, 5) == ("eof", b"")
    assert [t.name for t in await actl.toxics(proxy.name)] == ["noop_downstream"]
    reader, _ = await clients.open(proxy)
    assert await asyncio.wait_for(reader.readexactly(6), 5 * UNIT) == b"second"
    await actl.delete_proxy(proxy.name)
    assert await outcome(reader, 5) == ("eof", b"")


async def test_reset_reenables_proxies_and_removes_toxics(actl, servers, clients: Clients) -> None:
    """/reset: every proxy enabled again, every toxic gone, proxies kept."""
    proxy = await echo_proxy(actl, servers)
    await actl.add_toxic(proxy.name, ToxicSpec("latency", attributes={"latency": 2000}))
    await actl.set_enabled(proxy.name, False)
    await actl.reset()
    assert (await actl.get_proxy(proxy.name)).enabled
    assert await actl.toxics(proxy.name) == []
    reader, writer = await clients.open(proxy)
    assert await round_trip(reader, writer, b"quick", 5) < 1


async def test_unreachable_upstream_gives_the_client_eof(actl, servers, clients: Clients) -> None:
    """If the upstream cannot be dialled the accepted client is closed (EOF, not refused)."""
    proxy = await actl.create_proxy(unique("dead"), servers.closed_port())
    reader, _ = await clients.open(proxy)
    assert await outcome(reader, 5) == ("eof", b"")


async def test_metrics_count_bytes_per_direction(
    actl, servers, clients: Clients, implementation: str
) -> None:
    """/metrics exposes Toxiproxy's byte counters per proxy and direction. Toxiproxy adds a
    connection's bytes when it closes; the chaos proxy counts live ones too (on purpose)."""
    proxy = await echo_proxy(actl, servers)
    reader, writer = await clients.open(proxy)
    await round_trip(reader, writer, b"x" * 1000, 5)
    labels = {
        "direction": "downstream",
        "listener": proxy.listen,
        "proxy": proxy.name,
        "upstream": proxy.upstream,
    }

    async def sent() -> float | None:
        async with httpx.AsyncClient(base_url=actl.url) as http:
            text = (await http.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "toxiproxy_proxy_sent_bytes_total" and sample.labels == labels:
                    return sample.value
        return None

    if implementation == CHAOS_PROXY:
        assert await sent() == 1000
    writer.close()
    assert await wait_until(sent, 5, "the closed connection's bytes in /metrics") == 1000
