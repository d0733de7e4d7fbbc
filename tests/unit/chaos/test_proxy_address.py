"""host:port parsing with Go's net-package rules and error texts."""

from __future__ import annotations

import pytest
from progressbench.chaos.proxy.address import AddressError, join_host_port, resolve_listen, split_host_port

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:0", ("::1", 0)),
        (":8474", ("", 8474)),
        ("localhost:", ("localhost", 0)),
        ("", ("", 0)),
        ("127.0.0.1:+80", ("127.0.0.1", 80)),
        ("127.0.0.1:-0", ("127.0.0.1", 0)),
        ("localhost:http", ("localhost", 80)),
    ],
)
def test_split_host_port(text: str, parts: tuple[str, int]) -> None:
    """Go forms: IPv4, bracketed IPv6, empty host, empty port (= 0), nothing at all (all
    interfaces, any port), a signed port, a service name."""
    assert split_host_port(text) == parts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:99999", "address 99999: invalid port"),
        ("127.0.0.1:-1", "address -1: invalid port"),
        ("127.0.0.1:nosuchservice", "address tcp/nosuchservice: unknown port"),
        ("localhost", "address localhost: missing port in address"),
        ("::1:80", "address ::1:80: too many colons in address"),
    ],
)
def test_split_host_port_errors(text: str, message: str) -> None:
    """Malformed addresses raise with Go's wording."""
    with pytest.raises(AddressError, match=message):
        split_host_port(text)


def test_join_brackets_ipv6() -> None:
    """IPv6 hosts are bracketed when joined."""
    assert join_host_port("::", 38269) == "[::]:38269"
    assert join_host_port("127.0.0.1", 1) == "127.0.0.1:1"


async def test_resolve_listen_like_go() -> None:
    """ResolveTCPAddr-like: IP literals normalised, empty host kept, localhost → 127.0.0.1."""
    assert await resolve_listen("127.0.0.1:0") == "127.0.0.1:0"
    assert await resolve_listen(":0") == ":0"
    assert await resolve_listen("localhost:5") == "127.0.0.1:5"
