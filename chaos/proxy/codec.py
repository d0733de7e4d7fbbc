"""The HTTP API's JSON, in and out, byte-compatible with Toxiproxy 2.12 where it matters.

Pure functions, no I/O. Request bodies decode into the values of
:mod:`progressbench.chaos.proxy.model` (shared with the client adapter).
Decoding follows Go's ``encoding/json`` the way Toxiproxy uses it: only
the first JSON value of a body is read, object keys match
case-insensitively, ``null`` leaves a field at its default, unknown keys
are ignored, and a wrong type is a 400 whose text names the Go field
(``json: cannot unmarshal string into Go struct field
LatencyToxic.attributes.latency of type int64``). Syntax-error texts are
close to Go's but not identical.

Encoding writes the exact key order and number format of Toxiproxy's
output (compact JSON, ``toxicity`` as a float32 printed like Go:
``1``, ``0.5``; strings HTML-escaped like Go).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Iterable, Mapping
from decimal import Decimal

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


def _no_constants(name: str) -> object:
    """``NaN``/``Infinity`` are not JSON: Go stops at their first character."""
    raise _BadConstant(name)


class _BadConstant(ValueError):
    pass


_DECODER = json.JSONDecoder(parse_float=Number, parse_constant=_no_constants)


def parse_body(body: bytes) -> object:
    """The first JSON value in ``body`` (Go's ``Decoder.Decode``), or a 400."""
    text = body.decode("utf-8", "replace").lstrip(" \t\r\n")
    if not text:
        raise bad_body("EOF")
    try:
        value, _ = _DECODER.raw_decode(text)
    except _BadConstant as exc:
        raise bad_body(f"invalid character {str(exc)[0]!r} looking for beginning of value") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            raise bad_body("unexpected EOF") from None
        if exc.msg.startswith("Expecting value"):
            raise bad_body(f"invalid character {text[exc.pos]!r} looking for beginning of value") from None
        raise bad_body(f"{exc.msg} at offset {exc.pos}") from None
    return value


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


def _mismatch(value: object, field: str, go_type: str) -> ApiError:
    what = _kind(value)
    if isinstance(value, Number):
        what = f"number {value.text}"
    elif isinstance(value, float):
        what = f"number {value!r}"
    return bad_body(f"json: cannot unmarshal {what} into Go struct field {field} of type {go_type}")


def _object(value: object, go_type: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise bad_body(f"json: cannot unmarshal {_kind(value)} into Go value of type {go_type}")
    return value


def _lookup(obj: Mapping[str, object], key: str) -> object:
    """The value for ``key`` (exact, else case-insensitive); ``None`` if absent or null."""
    if key in obj:
        return obj[key]
    for name, value in obj.items():
        if name.lower() == key:
            return value
    return None


def _str(obj: Mapping[str, object], key: str, struct_name: str, default: str) -> str:
    value = _lookup(obj, key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _mismatch(value, f"{struct_name}.{key}", "string")
    return value


def _bool(obj: Mapping[str, object], key: str, struct_name: str) -> bool | None:
    value = _lookup(obj, key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _mismatch(value, f"{struct_name}.{key}", "bool")
    return value


def to_float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _float32(obj: Mapping[str, object], key: str, struct_name: str) -> float | None:
    value = _lookup(obj, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch(value, f"{struct_name}.{key}", "float32")
    try:
        result = to_float32(float(value))
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):  # Go: a number out of float32's range does not unmarshal
        raise _mismatch(
            value if isinstance(value, float) else float(value), f"{struct_name}.{key}", "float32"
        )
    return result


def _int64(value: object, field: str, go_type: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _mismatch(value, field, go_type)
    if not -(2**63) <= value < 2**63:
        raise _mismatch(float(value), field, go_type)
    return value


# -- proxies ------------------------------------------------------------------------


def decode_proxy(body: bytes, defaults: ProxySpec) -> ProxySpec:
    """A create or update body over ``defaults`` (missing fields keep the default)."""
    obj = _object(parse_body(body), "toxiproxy.Proxy")
    return _proxy_fields(obj, defaults)


def _proxy_fields(obj: Mapping[str, object], defaults: ProxySpec) -> ProxySpec:
    enabled = _bool(obj, "enabled", "Proxy")
    return ProxySpec(
        name=_str(obj, "name", "Proxy", defaults.name),
        listen=_str(obj, "listen", "Proxy", defaults.listen),
        upstream=_str(obj, "upstream", "Proxy", defaults.upstream),
        enabled=defaults.enabled if enabled is None else enabled,
    )


def decode_populate(body: bytes) -> list[ProxySpec]:
    """A ``/populate`` body; every entry must have a name and an upstream.

    ``enabled`` stays ``None`` when absent (it then means true).
    """
    value = parse_body(body)
    if not isinstance(value, list):
        raise bad_body(f"json: cannot unmarshal {_kind(value)} into Go value of type []toxiproxy.Proxy")
    blank = ProxySpec(name="", listen="", upstream="")
    specs = [_proxy_fields({} if item is None else _object(item, "toxiproxy.Proxy"), blank) for item in value]
    for number, spec in enumerate(specs, start=1):
        if not spec.name:
            raise missing_field(f"name at proxy {number}")
        if not spec.upstream:
            raise missing_field(f"upstream at proxy {number}")
        check_proxy_name(spec.name)
    return specs


# -- toxics ----------------------------------------------------------------------------


def _attributes(obj: Mapping[str, object]) -> Mapping[str, object]:
    value = _lookup(obj, "attributes")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _mismatch(value, "ToxicWrapper.attributes", "toxics.Toxic")
    return value


def decode_toxic(body: bytes) -> ToxicSpec:
    obj = _object(parse_body(body), "toxics.ToxicWrapper")
    toxicity = _float32(obj, "toxicity", "ToxicWrapper")
    return ToxicSpec(
        name=_str(obj, "name", "ToxicWrapper", ""),
        type=_str(obj, "type", "ToxicWrapper", ""),
        stream=_str(obj, "stream", "ToxicWrapper", "downstream"),
        toxicity=1.0 if toxicity is None else toxicity,
        attributes=_attributes(obj),
    )


def decode_toxic_patch(body: bytes) -> ToxicPatch:
    obj = _object(parse_body(body), "toxics.ToxicWrapper")
    return ToxicPatch(attributes=_attributes(obj), toxicity=_float32(obj, "toxicity", "ToxicWrapper"))


def apply_attributes(kind: ToxicKind, base: Toxic, raw: Mapping[str, object]) -> Toxic:
    """``base`` with the attributes present in ``raw`` replaced (others kept)."""
    values: dict[str, int] = {}
    for field in dataclasses.fields(kind.factory):  # type: ignore[arg-type]
        value = _lookup(raw, field.name)
        if value is not None:
            values[field.name] = _int64(value, f"{kind.go_name}.attributes.{field.name}", kind.go_int)
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
