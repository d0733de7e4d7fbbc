"""Toxiproxy conformance on real sockets, driven through progressbench.chaos.client (toxiproxy-python).

Timing tolerances are generous so that the suite holds on a loaded 2-core
machine: a toxic's delay must show up at least in full (minus 20 ms of
timer slop) and at most 500 ms late; throughput within -20 %/+100 % of the
configured rate. The only wire-level test talks raw HTTP (httpx) because it
pins exact status codes, headers and bodies.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from progressbench.chaos.client import AsyncProxyControl, ProxyControl, ProxyInfo, ToxicSpec

from progressbench.core.errors import ChaosError, UnsupportedToxic
from tests.helpers import UNIT
from tests.integration.chaos.proxy_harness import (
    Clients,
    Servers,
    echo,
    outcome,
    round_trip,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SLOP = 0.02  # timers may fire this early relative to our clock reads
LATE = 0.5  # how late a delayed delivery may be under load


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
        assert http.get("/metrics").text.startswith("# HELP")


def test_adapter_translates_errors(control: ProxyControl) -> None:
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
    assert control.supports("blackhole") and control.supports("idle_timeout")
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


async def test_metrics_count_bytes_per_direction(actl, servers, clients: Clients) -> None:
    """/metrics exposes Toxiproxy's byte counters, live, per proxy and direction."""
    proxy = await echo_proxy(actl, servers)
    reader, writer = await clients.open(proxy)
    await round_trip(reader, writer, b"x" * 1000, 5)

    async def scrape() -> str:
        async with httpx.AsyncClient(base_url=actl.url) as http:
            return (await http.get("/metrics")).text

    line = f'toxiproxy_proxy_sent_bytes_total{{direction="downstream",listener="{proxy.listen}",'
    line += f'proxy="{proxy.name}",upstream="{proxy.upstream}"}} 1000.0'
    assert line in await scrape()
