"""A ``--toxiproxy-url`` that nothing answers: one clear line saying what to do instead."""

from __future__ import annotations

import socket

import pytest

from progressbench.app.proxies import StackProxies
from progressbench.core.errors import StackError


def test_an_unreachable_toxiproxy_url_says_how_to_go_on() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        with pytest.raises(StackError) as raised:
            StackProxies.external(url)
    message = str(raised.value)
    assert f"no Toxiproxy API answers at {url}" in message
    assert "toxiproxy-server" in message and "--toxiproxy-url" in message
