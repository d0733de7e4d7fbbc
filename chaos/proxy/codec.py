"""The HTTP API's JSON, in and out, byte-compatible with Toxiproxy 2.12 where it matters.

Pure functions, no I/O. Request bodies decode into the values of
:mod:`progressbench.chaos.proxy.model` (shared with the client adapter).
Decoding follows Go's ``encoding/json`` the way Toxiproxy uses it: only
the first JSON value of a body is read, object keys match
case-insensitively, ``null`` leaves a field at its default, unknown keys
are ignored, and a wrong type is a 400 whose text names the Go field
(``json: cannot unmarshal string into Go struct field
LatencyToxic.attributes.latency of type int64``), the first one in
document order. Syntax errors are found by a scanner that follows Go's, so
their texts are Go's (checked against a real Toxiproxy 2.12.0 built with
Go 1.19).

Encoding writes the exact key order and number format of Toxiproxy's
output (compact JSON, ``toxicity`` as a float32 printed like Go:
``1``, ``0.5``; strings HTML-escaped like Go).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import cast

from progressbench.chaos.proxy.model import ProxySpec, ToxicPatch, ToxicSpec
from progressbench.chaos.proxy.toxics import Toxic, ToxicKind

# -- errors ---------------------------------------------------------------------


class ApiError(Exception):
    """An API failure with its HTTP status; the message is the body's ``error``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def bad_body(reason: str) -> ApiError:
    return ApiError(f"bad request body: {reason}", 400)


def missing_field(what: str) -> ApiError:
    return ApiError(f"missing required field: {what}", 400)


def proxy_not_found() -> ApiError:
    return ApiError("proxy not found", 404)


def proxy_exists() -> ApiError:
    return ApiError("proxy already exists", 409)


def invalid_stream() -> ApiError:
    return ApiError("stream was invalid, can be either upstream or downstream", 400)


def invalid_toxic_type() -> ApiError:
    return ApiError("invalid toxic type", 400)


def toxic_exists() -> ApiError:
    return ApiError("toxic already exists", 409)


#: Longest proxy name accepted. Toxiproxy checks none, but a name must fit in a request path to be
#: shown, updated or deleted again (issue #13, probe 7), so names are bounded and have no ``/``.
MAX_NAME_LENGTH = 256


def check_proxy_name(name: str) -> None:
    """A 400 for a name that could never be addressed as ``/proxies/{name}``."""
    if len(name) > MAX_NAME_LENGTH:
        raise ApiError(f"invalid proxy name: longer than {MAX_NAME_LENGTH} characters", 400)
    if "/" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ApiError("invalid proxy name: it may not contain '/' or control characters", 400)


def toxic_not_found() -> ApiError:
    return ApiError("toxic not found", 404)


# -- decoding helpers -------------------------------------------------------------


class Number(float):
    """A JSON number as parsed, keeping its text: ``1e400`` is infinity to Python, not to Go."""

    text: str

    def __new__(cls, text: str) -> Number:
        value = super().__new__(cls, text)
        value.text = text
        return value


#: Used only on text :func:`scan_value` has accepted (so no ``NaN`` and no syntax errors).
_DECODER = json.JSONDecoder(parse_float=Number)


def parse_body(body: bytes) -> object:
    """The first JSON value in ``body`` (Go's ``Decoder.Decode``), or a 400 in Go's words."""
    data = body.lstrip(b" \t\r\n")
    if not data:
        raise bad_body("EOF")
    end = scan_value(data)
    return _DECODER.decode(data[:end].decode("utf-8", "replace"))


_WHITESPACE = b" \t\r\n"
_ESCAPES = {
    0x07: "\\a",
    0x08: "\\b",
    0x0C: "\\f",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x0B: "\\v",
    0x5C: "\\\\",
}


def go_quote_byte(byte: int) -> str:
    """Go's ``quoteChar``: one byte as ``encoding/json`` names it in a syntax error."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    if byte in _ESCAPES:
        return f"'{_ESCAPES[byte]}'"
    if byte < 0x20 or byte == 0x7F:
        return f"'\\x{byte:02x}'"
    char = chr(byte)  # Go quotes the byte as the rune U+00XX
    return f"'{char}'" if byte < 0x80 or char.isprintable() else f"'\\u{byte:04x}'"


def _syntax(byte: int, context: str) -> ApiError:
    return bad_body(f"invalid character {go_quote_byte(byte)} {context}")


def scan_value(data: bytes) -> int:
    """Where the first JSON value of ``data`` ends, checked the way Go's scanner checks it.

    Go reads one value and ignores what follows it; a value cut short is
    ``unexpected EOF``; any other fault is ``invalid character 'c' <where>``
    with Go's wording. (Python's own messages differ, so the check is done
    here and Python only converts the checked slice.)
    """
    n = len(data)
    pos = 0
    stack: list[int] = []  # 0x7B '{' or 0x5B '['

    def skip(at: int) -> int:
        while at < n and data[at] in _WHITESPACE:
            at += 1
        return at

    def need(at: int) -> int:
        if at >= n:
            raise bad_body("unexpected EOF")
        return data[at]

    while True:
        # A value starts at pos.
        pos = skip(pos)
        c = need(pos)
        if c == 0x7B:  # {
            pos = skip(pos + 1)
            c = need(pos)
            if c == 0x7D:
                pos += 1
            else:
                if c != 0x22:
                    raise _syntax(c, "looking for beginning of object key string")
                stack.append(0x7B)
                pos = _object_key(data, pos)
                continue
        elif c == 0x5B:  # [
            pos = skip(pos + 1)
            if need(pos) == 0x5D:
                pos += 1
            else:
                stack.append(0x5B)
                continue
        elif c == 0x22:
            pos = _string_end(data, pos)
        elif c == 0x2D or 0x30 <= c <= 0x39:
            pos = _number_end(data, pos)
            if not stack:
                return pos  # a complete top-level number (EOF or any byte may follow)
        elif c in b"tfn":
            word = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}[c]
            for i in range(1, len(word)):
                got = need(pos + i)
                if got != word[i]:
                    raise _syntax(got, f"in literal {word.decode()} (expecting {go_quote_byte(word[i])})")
            pos += len(word)
        else:
            raise _syntax(c, "looking for beginning of value")
        # A value ended at pos: continue its container, or finish.
        while True:
            if not stack:
                return pos
            pos = skip(pos)
            c = need(pos)
            if stack[-1] == 0x7B:
                if c == 0x7D:
                    stack.pop()
                    pos += 1
                    continue
                if c != 0x2C:
                    raise _syntax(c, "after object key:value pair")
                pos = skip(pos + 1)
                c = need(pos)
                if c != 0x22:
                    raise _syntax(c, "looking for beginning of object key string")
                pos = _object_key(data, pos)
                break
            if c == 0x5D:
                stack.pop()
                pos += 1
                continue
            if c != 0x2C:
                raise _syntax(c, "after array element")
            pos += 1
            break


def _object_key(data: bytes, pos: int) -> int:
    """A key string at ``pos`` and its colon; returns where the value may start."""
    pos = _string_end(data, pos)
    while pos < len(data) and data[pos] in _WHITESPACE:
        pos += 1
    if pos >= len(data):
        raise bad_body("unexpected EOF")
    if data[pos] != 0x3A:
        raise _syntax(data[pos], "after object key")
    return pos + 1


def _string_end(data: bytes, pos: int) -> int:
    """``data[pos]`` is a quote; the index just past the closing quote."""
    n = len(data)
    pos += 1
    while True:
        if pos >= n:
            raise bad_body("unexpected EOF")
        c = data[pos]
        if c == 0x22:
            return pos + 1
        if c < 0x20:
            raise _syntax(c, "in string literal")
        if c == 0x5C:
            pos += 1
            if pos >= n:
                raise bad_body("unexpected EOF")
            e = data[pos]
            if e == 0x75:  # u
                for i in range(1, 5):
                    if pos + i >= n:
                        raise bad_body("unexpected EOF")
                    if data[pos + i] not in b"0123456789abcdefABCDEF":
                        raise _syntax(data[pos + i], "in \\u hexadecimal character escape")
                pos += 4
            elif e not in b'"\\/bfnrt':
                raise _syntax(e, "in string escape code")
        pos += 1


def _digits_end(data: bytes, pos: int) -> int:
    while pos < len(data) and 0x30 <= data[pos] <= 0x39:
        pos += 1
    return pos


def _number_end(data: bytes, pos: int) -> int:
    """A number at ``pos``; the index just past it (the next byte, if any, is not checked)."""
    n = len(data)
    if data[pos] == 0x2D:
        pos += 1
        if pos >= n:
            raise bad_body("unexpected EOF")
        if not 0x30 <= data[pos] <= 0x39:
            raise _syntax(data[pos], "in numeric literal")
    pos = pos + 1 if data[pos] == 0x30 else _digits_end(data, pos)
    if pos < n and data[pos] == 0x2E:
        pos += 1
        if pos >= n:
            raise bad_body("unexpected EOF")
        if not 0x30 <= data[pos] <= 0x39:
            raise _syntax(data[pos], "after decimal point in numeric literal")
        pos = _digits_end(data, pos)
    if pos < n and data[pos] in b"eE":
        pos += 1
        if pos < n and data[pos] in b"+-":
            pos += 1
        if pos >= n:
            raise bad_body("unexpected EOF")
        if not 0x30 <= data[pos] <= 0x39:
            raise _syntax(data[pos], "in exponent of numeric literal")
        pos = _digits_end(data, pos)
    return pos


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_NUMERIC_GO_TYPES = frozenset({"int", "int64", "float32"})

#: Go's names for the anonymous types Toxiproxy decodes into (``reflect.Type.String()``).
POPULATE_ITEM_TYPE = 'struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
TOXIC_PATCH_TYPE = (
    'struct { Attributes interface {} "json:\\"attributes\\""; Toxicity float32 "json:\\"toxicity\\"" }'
)


def _mismatch(value: object, field: str, go_type: str) -> ApiError:
    """Go's ``UnmarshalTypeError`` text: a number's literal is named only for a numeric target."""
    what = _kind(value)
    if what == "number" and go_type in _NUMERIC_GO_TYPES:
        literal = value.text if isinstance(value, Number) else str(value)
        what = f"number {literal}"
    return bad_body(f"json: cannot unmarshal {what} into Go struct field {field} of type {go_type}")


def _value_mismatch(value: object, go_type: str) -> ApiError:
    return bad_body(f"json: cannot unmarshal {_kind(value)} into Go value of type {go_type}")


Convert = Callable[[object], object]


def _decode_struct(value: object, go_type: str, fields: Mapping[str, Convert]) -> dict[str, object]:
    """Go's ``json.Unmarshal`` into a struct: the fields found in ``value``, converted.

    ``null`` is an empty object (it leaves a struct as it was). Keys are taken
    in document order and match a field exactly or else case-insensitively; a
    later key for the same field wins; a ``null`` value leaves the field alone;
    unknown keys are ignored. The first type error in document order is the
    one Go reports, so it is raised here.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _value_mismatch(value, go_type)
    folded = {name.lower(): name for name in fields}
    found: dict[str, object] = {}
    for key, item in value.items():
        name = key if key in fields else folded.get(key.lower())
        if name is None or item is None:
            continue
        found[name] = fields[name](item)
    return found


def _as_str(field: str) -> Convert:
    def convert(value: object) -> object:
        if not isinstance(value, str):
            raise _mismatch(value, field, "string")
        return value

    return convert


def _as_bool(field: str, go_type: str = "bool") -> Convert:
    def convert(value: object) -> object:
        if not isinstance(value, bool):
            raise _mismatch(value, field, go_type)
        return value

    return convert


def to_float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _as_float32(field: str) -> Convert:
    def convert(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _mismatch(value, field, "float32")
        try:
            result = to_float32(float(value))
        except OverflowError:
            result = math.inf
        if not math.isfinite(result):  # Go: a number out of float32's range does not unmarshal
            raise _mismatch(value, field, "float32")
        return result

    return convert


def _as_int(field: str, go_type: str) -> Convert:
    def convert(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            raise _mismatch(value, field, go_type)
        return value

    return convert


def _as_object(field: str, go_type: str) -> Convert:
    """An attributes object, checked only for being an object (its fields come later)."""

    def convert(value: object) -> object:
        if not isinstance(value, dict):
            raise _mismatch(value, field, go_type)
        return value

    return convert


# -- proxies ------------------------------------------------------------------------


def _proxy_fields(struct_name: str) -> dict[str, Convert]:
    return {
        "name": _as_str(f"{struct_name}.name"),
        "listen": _as_str(f"{struct_name}.listen"),
        "upstream": _as_str(f"{struct_name}.upstream"),
        "enabled": _as_bool(f"{struct_name}.enabled"),
    }


def _proxy_spec(found: Mapping[str, object], defaults: ProxySpec) -> ProxySpec:
    return dataclasses.replace(defaults, **found)  # type: ignore[arg-type]


def decode_proxy(body: bytes, defaults: ProxySpec) -> ProxySpec:
    """A create or update body over ``defaults`` (missing fields keep the default)."""
    found = _decode_struct(parse_body(body), "toxiproxy.Proxy", _proxy_fields("Proxy"))
    return _proxy_spec(found, defaults)


def decode_populate(body: bytes) -> list[ProxySpec]:
    """A ``/populate`` body; every entry must have a name and an upstream.

    ``enabled`` stays ``None`` when absent (it then means true). Toxiproxy
    decodes into ``[]struct{Proxy; Enabled *bool}``, whose Go names appear in
    its type-error texts; ``null`` is an empty list.
    """
    value = parse_body(body)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _value_mismatch(value, f"[]{POPULATE_ITEM_TYPE}")
    blank = ProxySpec(name="", listen="", upstream="")
    fields = _proxy_fields("")
    specs = [_proxy_spec(_decode_struct(item, POPULATE_ITEM_TYPE, fields), blank) for item in value]
    for number, spec in enumerate(specs, start=1):
        if not spec.name:
            raise missing_field(f"name at proxy {number}")
        if not spec.upstream:
            raise missing_field(f"upstream at proxy {number}")
        check_proxy_name(spec.name)
    return specs


# -- toxics ----------------------------------------------------------------------------


def decode_toxic(body: bytes) -> ToxicSpec:
    """A create body. Toxiproxy's first pass decodes ``attributes`` into a ``NoopToxic``, so
    only their being an object is checked here; :func:`apply_attributes` does the fields."""
    fields: dict[str, Convert] = {
        "name": _as_str("ToxicWrapper.name"),
        "type": _as_str("ToxicWrapper.type"),
        "stream": _as_str("ToxicWrapper.stream"),
        "toxicity": _as_float32("ToxicWrapper.toxicity"),
        "attributes": _as_object("ToxicWrapper.attributes", "toxics.NoopToxic"),
    }
    found = _decode_struct(parse_body(body), "toxics.ToxicWrapper", fields)
    return ToxicSpec(
        name=str(found.get("name", "")),
        type=str(found.get("type", "")),
        stream=str(found.get("stream", "downstream")),
        toxicity=float(cast(float, found.get("toxicity", 1.0))),
        attributes=cast(Mapping[str, object], found.get("attributes", {})),
    )


def decode_toxic_patch(body: bytes, kind: ToxicKind) -> ToxicPatch:
    """An update body for a toxic of ``kind``: one pass, as Toxiproxy decodes it into
    ``struct{Attributes interface{}; Toxicity float32}`` around the toxic's own struct."""

    def attributes(value: object) -> object:
        if not isinstance(value, dict):
            raise _mismatch(value, ".attributes", f"toxics.{kind.go_name}")
        _decode_struct(value, f"toxics.{kind.go_name}", _attribute_fields(kind))
        return value

    fields: dict[str, Convert] = {"attributes": attributes, "toxicity": _as_float32(".toxicity")}
    found = _decode_struct(parse_body(body), TOXIC_PATCH_TYPE, fields)
    toxicity = found.get("toxicity")
    return ToxicPatch(
        attributes=cast(Mapping[str, object], found.get("attributes", {})),
        toxicity=None if toxicity is None else float(cast(float, toxicity)),
    )


def _attribute_fields(kind: ToxicKind) -> dict[str, Convert]:
    return {
        field.name: _as_int(f"{kind.go_name}.attributes.{field.name}", kind.go_int)
        for field in dataclasses.fields(kind.factory)  # type: ignore[arg-type]
    }


def apply_attributes(kind: ToxicKind, base: Toxic, raw: Mapping[str, object]) -> Toxic:
    """``base`` with the attributes present in ``raw`` replaced (others kept)."""
    values = _decode_struct(raw, f"toxics.{kind.go_name}", _attribute_fields(kind))
    return dataclasses.replace(base, **values)  # type: ignore[type-var]


# -- encoding ----------------------------------------------------------------------------


def go_string(value: str) -> str:
    """A JSON string as Go's encoder writes it (UTF-8, HTML characters escaped)."""
    return (
        json.dumps(value, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def go_float32(value: float) -> str:
    """A float32 as Go's JSON encoder prints it: shortest digits, ``1`` not ``1.0``."""
    if value == 0:
        return "0"
    target = to_float32(value)
    for precision in range(0, 10):
        text = f"{target:.{precision}e}"
        if to_float32(float(text)) == target:
            break
    mantissa, exponent = text.split("e")
    magnitude = abs(target)
    if 1e-6 <= magnitude < 1e21:
        return format(Decimal(text).normalize(), "f")
    digits = mantissa.rstrip("0").rstrip(".")
    exp = int(exponent)
    sign = "-" if exp < 0 else "+"
    width = 1 if exp < 0 and abs(exp) < 10 else 2
    return f"{digits}e{sign}{abs(exp):0{width}d}"


def encode_toxic(name: str, type: str, stream: str, toxicity: float, attributes: Mapping[str, int]) -> str:
    attrs = ",".join(f"{go_string(key)}:{value}" for key, value in attributes.items())
    return (
        f'{{"attributes":{{{attrs}}},"name":{go_string(name)},"type":{go_string(type)},'
        f'"stream":{go_string(stream)},"toxicity":{go_float32(toxicity)}}}'
    )


def encode_proxy(name: str, listen: str, upstream: str, enabled: bool, toxics: Iterable[str]) -> str:
    """A proxy object; ``toxics`` are already-encoded toxic objects."""
    return (
        f'{{"name":{go_string(name)},"listen":{go_string(listen)},'
        f'"upstream":{go_string(upstream)},"enabled":{"true" if enabled else "false"},'
        f'"Logger":{{}},"toxics":[{",".join(toxics)}]}}'
    )


def encode_object(members: Mapping[str, str]) -> str:
    """A JSON object of already-encoded values, keys sorted (Go sorts map keys)."""
    return "{" + ",".join(f"{go_string(k)}:{members[k]}" for k in sorted(members)) + "}"


def encode_array(items: Iterable[str]) -> str:
    return "[" + ",".join(items) + "]"


def encode_error(error: ApiError) -> bytes:
    """The body of an ordinary error response (``http.Error`` appends a newline)."""
    return f'{{"error":{go_string(error.message)},"status":{error.status}}}\n'.encode()


def encode_populate(proxies: list[str], error: ApiError | None) -> bytes:
    """The ``/populate`` body: ``proxies`` is ``null`` when empty; no trailing newline."""
    listed = encode_array(proxies) if proxies else "null"
    if error is None:
        return f'{{"proxies":{listed}}}'.encode()
    return (f'{{"error":{go_string(error.message)},"status":{error.status},"proxies":{listed}}}').encode()
