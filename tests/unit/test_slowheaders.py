"""The services' HTTP protocol: uvicorn's C parser when installed, with the request-head deadline."""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from progressbench.kit.slowheaders import with_header_timeout


def test_services_parse_with_httptools_and_keep_the_head_deadline() -> None:
    protocol = with_header_timeout(2.5)
    assert issubclass(protocol, HttpToolsProtocol)
    assert protocol.header_timeout_s == 2.5  # type: ignore[attr-defined]
