"""The API's JSON: Toxiproxy's exact shapes out, Go-style decoding and error texts in."""

from __future__ import annotations

import json

import pytest
from progressbench.chaos.proxy import codec
from progressbench.chaos.proxy.codec import ApiError
from progressbench.chaos.proxy.model import ProxySpec
from progressbench.chaos.proxy.toxics import REGISTRY
from progressbench.chaos.proxy.toxics.latency import LatencyToxic

pytestmark = pytest.mark.timeout(10)


def test_toxic_object_has_toxiproxys_key_order_and_number_format() -> None:
    """Toxic JSON: attributes, name, type, stream, toxicity; toxicity 1.0 prints as 1."""
    text = codec.encode_toxic(
        "latency_downstream", "latency", "downstream", 1.0, {"latency": 100, "jitter": 10}
    )
    assert text == (
        '{"attributes":{"latency":100,"jitter":10},"name":"latency_downstream",'
        '"type":"latency","stream":"downstream","toxicity":1}'
    )


def test_proxy_object_carries_the_stray_logger_key() -> None:
    """Proxy JSON: name, listen, upstream, enabled, Logger {}, toxics (as 2.12 emits it)."""
    text = codec.encode_proxy("p1", "127.0.0.1:35241", "127.0.0.1:19000", True, [])
    assert text == (
        '{"name":"p1","listen":"127.0.0.1:35241","upstream":"127.0.0.1:19000",'
        '"enabled":true,"Logger":{},"toxics":[]}'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (0.25, "0.25"),
        (0.1, "0.1"),
        (0.0, "0"),
        (2.0, "2"),
        (1e-7, "1e-7"),
        (3e21, "3e+21"),
    ],
)
def test_float32_prints_like_go(value: float, text: str) -> None:
    """toxicity is a float32 printed with Go's shortest form."""
    assert codec.go_float32(codec.to_float32(value)) == text


def test_strings_are_html_escaped_like_go() -> None:
    """Go's encoder escapes <, > and & in strings."""
    assert codec.go_string("a<b>&c") == '"a\\u003cb\\u003e\\u0026c"'


def test_error_bodies_end_with_a_newline_and_populate_ones_do_not() -> None:
    """http.Error appends a newline; the /populate error body is plain JSON."""
    error = ApiError("proxy not found", 404)
    assert codec.encode_error(error) == b'{"error":"proxy not found","status":404}\n'
    body = codec.encode_populate([], ApiError("missing required field: upstream at proxy 1", 400))
    assert json.loads(body) == {
        "error": "missing required field: upstream at proxy 1",
        "status": 400,
        "proxies": None,
    }
    assert codec.encode_populate([], None) == b'{"proxies":null}'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "bad request body: EOF"),
        (b"{", "bad request body: unexpected EOF"),
        (b"xyz", "bad request body: invalid character 'x' looking for beginning of value"),
        (b"tru", "bad request body: unexpected EOF"),
        (b"-", "bad request body: unexpected EOF"),
        (b"NaN", "bad request body: invalid character 'N' looking for beginning of value"),
        (b'{"a" 1}', "bad request body: invalid character '1' after object key"),
        (b'{"a":1 "b":2}', "bad request body: invalid character '\"' after object key:value pair"),
        (b"{'a':1}", "bad request body: invalid character '\\'' looking for beginning of object key string"),
        (b'{"a":1,}', "bad request body: invalid character '}' looking for beginning of object key string"),
        (b"[1,]", "bad request body: invalid character ']' looking for beginning of value"),
        (b"[1 2]", "bad request body: invalid character '2' after array element"),
        (b'{"a":fals }', "bad request body: invalid character ' ' in literal false (expecting 'e')"),
        (b'"\\q"', "bad request body: invalid character 'q' in string escape code"),
        (b'"\\u12g4"', "bad request body: invalid character 'g' in \\u hexadecimal character escape"),
        (b'"a\nb"', "bad request body: invalid character '\\n' in string literal"),
        (b"-x", "bad request body: invalid character 'x' in numeric literal"),
        (b"1.e", "bad request body: invalid character 'e' after decimal point in numeric literal"),
        (b"1e+x", "bad request body: invalid character 'x' in exponent of numeric literal"),
        (b"\xc3\xa9", "bad request body: invalid character '\xc3' looking for beginning of value"),
        (b"\x01", "bad request body: invalid character '\\x01' looking for beginning of value"),
        (b"\xa0", "bad request body: invalid character '\\u00a0' looking for beginning of value"),
        (b"null", "missing required field: name"),
        (
            b'{"upstream":5,"name":1}',
            "bad request body: json: cannot unmarshal number into Go struct field Proxy.upstream"
            " of type string",
        ),
        (b"[]", "bad request body: json: cannot unmarshal array into Go value of type toxiproxy.Proxy"),
        (
            b'{"name": 5}',
            "bad request body: json: cannot unmarshal number into Go struct field Proxy.name of type string",
        ),
    ],
)
def test_bad_proxy_bodies_are_400_with_go_texts(body: bytes, message: str) -> None:
    """Malformed bodies give 400 with Go's ``encoding/json`` words (the first error in document
    order; ``null`` decodes as an empty object, so the name is missing)."""
    with pytest.raises(ApiError) as info:
        spec = codec.decode_proxy(body, ProxySpec("", "", ""))
        if not spec.name:
            raise codec.missing_field("name")
    assert (info.value.status, info.value.message) == (400, message)


def test_a_number_literal_is_named_only_for_numeric_fields() -> None:
    """Go names ``number 1e400`` when the target is a number, just ``number`` for a string."""
    with pytest.raises(ApiError, match=r"unmarshal number into Go struct field Proxy\.listen of"):
        codec.decode_proxy(b'{"listen":1e400}', ProxySpec("", "", ""))
    with pytest.raises(ApiError, match=r"number 1e39 into Go struct field \.toxicity of type float32"):
        codec.decode_toxic_patch(b'{"toxicity":1e39}', REGISTRY["latency"])


def test_proxy_decoding_keeps_defaults_and_matches_keys_case_insensitively() -> None:
    """Missing or null fields keep their defaults; `Name` matches `name`; extra data is ignored."""
    spec = codec.decode_proxy(
        b'{"Name": "p", "upstream": null, "unknown": 1} trailing', ProxySpec("", "l", "u", True)
    )
    assert spec == ProxySpec("p", "l", "u", True)


def test_toxic_defaults() -> None:
    """A bare toxic body defaults to stream downstream, toxicity 1, no attributes."""
    spec = codec.decode_toxic(b'{"type": "latency"}')
    assert (spec.name, spec.stream, spec.toxicity, dict(spec.attributes)) == ("", "downstream", 1.0, {})


def test_attribute_type_errors_name_the_go_field() -> None:
    """A string attribute is a 400 naming LatencyToxic.attributes.latency of type int64."""
    with pytest.raises(ApiError) as info:
        codec.apply_attributes(REGISTRY["latency"], LatencyToxic(), {"latency": "100"})
    assert info.value.message == (
        "bad request body: json: cannot unmarshal string into Go struct field "
        "LatencyToxic.attributes.latency of type int64"
    )


def test_attributes_merge_and_ignore_unknown_keys() -> None:
    """A partial attribute update keeps the other values; unknown keys are ignored."""
    toxic = codec.apply_attributes(REGISTRY["latency"], LatencyToxic(100, 10), {"jitter": 3, "x": 1})
    assert toxic == LatencyToxic(100, 3)


def test_populate_checks_every_entry_before_anything_happens() -> None:
    """A missing upstream anywhere fails the whole populate with its 1-based index."""
    with pytest.raises(ApiError) as info:
        codec.decode_populate(b'[{"name": "a", "upstream": "x:1"}, {"name": "b"}]')
    assert info.value.message == "missing required field: upstream at proxy 2"
    specs = codec.decode_populate(b'[{"name": "a", "upstream": "x:1", "enabled": false}]')
    assert specs == [ProxySpec("a", "", "x:1", False)]
