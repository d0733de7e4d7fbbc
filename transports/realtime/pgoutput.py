"""Decode ``pgoutput`` protocol-v1 messages into Realtime change records (pure, no I/O).

Each row of ``pg_logical_slot_get_binary_changes(..., 'proto_version', '1',
'publication_names', ...)`` is one message; its first byte names it:
``B`` (begin: commit timestamp), ``R`` (relation: columns, key flags, type
oids), ``I``/``U``/``D`` (tuples), ``C`` (commit), and ``T``/``Y``/``O``/``M``
which we skip. The decoder keeps a relation cache by oid, as the protocol
requires (``R`` is only re-sent when needed).

Values become JSON the way Realtime's ``to_jsonb(text::type)`` does for the
types the store uses: integers and floats are numbers, bools are booleans,
json/jsonb are nested JSON, timestamps are ISO strings, everything else is
its text form. ``old_record`` follows the default replica identity: the key
columns (copied from the new tuple for an UPDATE that did not change them).
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

#: Built-in type oids -> pg_type.typname (what Realtime puts in ``columns[].type``).
TYPE_NAMES: dict[int, str] = {
    16: "bool",
    17: "bytea",
    20: "int8",
    21: "int2",
    23: "int4",
    25: "text",
    114: "json",
    700: "float4",
    701: "float8",
    1043: "varchar",
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
    1700: "numeric",
    2950: "uuid",
    3802: "jsonb",
}
_INTS = frozenset({20, 21, 23})
_FLOATS = frozenset({700, 701, 1700})
_JSON = frozenset({114, 3802})
_TIMESTAMPS = frozenset({1114, 1184})

Kind = Literal["INSERT", "UPDATE", "DELETE"]


class DecodeError(ValueError):
    """A message that does not follow pgoutput protocol version 1."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    key: bool

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type_oid, str(self.type_oid))


@dataclass(frozen=True, slots=True)
class Relation:
    oid: int
    schema: str
    table: str
    replica_identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """One row change, shaped for a ``postgres_changes`` frame."""

    kind: Kind
    relation: Relation
    commit_timestamp: str
    record: dict[str, Any] | None
    old_record: dict[str, Any] | None

    @property
    def key(self) -> dict[str, Any]:
        """The key columns' values (from the new row, else the old identity)."""
        source = self.record if self.record is not None else (self.old_record or {})
        return {c.name: source.get(c.name) for c in self.relation.columns if c.key}

    def data(self) -> dict[str, Any]:
        """The ``payload.data`` object Realtime sends (fields in its order)."""
        body: dict[str, Any] = {
            "columns": [{"name": c.name, "type": c.type_name} for c in self.relation.columns],
            "commit_timestamp": self.commit_timestamp,
            "errors": None,
            "schema": self.relation.schema,
            "table": self.relation.table,
        }
        if self.record is not None:
            body["record"] = self.record
        if self.old_record is not None:
            body["old_record"] = self.old_record
        body["type"] = self.kind
        return body


def to_json_value(type_oid: int, text: str) -> Any:
    if type_oid in _INTS:
        return int(text)
    if type_oid == 16:
        return text == "t"
    if type_oid in _FLOATS:
        number = float(text)
        return int(number) if type_oid == 1700 and number.is_integer() and "." not in text else number
    if type_oid in _JSON:
        return json.loads(text)
    if type_oid in _TIMESTAMPS:
        iso = text.replace(" ", "T", 1)
        if iso[-3] in "+-" and iso[-3:].lstrip("+-").isdigit():
            iso += ":00"
        return iso
    return text


def commit_time_iso(micros_since_2000: int) -> str:
    stamp = PG_EPOCH + dt.timedelta(microseconds=micros_since_2000)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError("message truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> str:
        return self.take(1).decode()

    def int16(self) -> int:
        value: int = struct.unpack("!h", self.take(2))[0]
        return value

    def int32(self) -> int:
        value: int = struct.unpack("!i", self.take(4))[0]
        return value

    def uint32(self) -> int:
        value: int = struct.unpack("!I", self.take(4))[0]
        return value

    def int64(self) -> int:
        value: int = struct.unpack("!q", self.take(8))[0]
        return value

    def cstring(self) -> str:
        end = self.data.index(b"\0", self.pos)
        text = self.data[self.pos : end].decode()
        self.pos = end + 1
        return text


@dataclass
class Decoder:
    """Stateful across messages: relation cache and the current transaction's commit time."""

    relations: dict[int, Relation] = field(default_factory=dict)
    commit_timestamp: str = ""

    def feed(self, message: bytes) -> Change | None:
        if not message:
            raise DecodeError("empty message")
        r = _Reader(message)
        tag = r.byte()
        if tag == "B":
            r.int64()  # final LSN
            self.commit_timestamp = commit_time_iso(r.int64())
            return None
        if tag == "R":
            self._relation(r)
            return None
        if tag == "I":
            rel = self._rel(r.uint32())
            if r.byte() != "N":
                raise DecodeError("insert without a new tuple")
            return Change("INSERT", rel, self.commit_timestamp, self._tuple(r, rel, None), None)
        if tag == "U":
            rel = self._rel(r.uint32())
            old: dict[str, Any] | None = None
            marker = r.byte()
            if marker in ("K", "O"):
                old = self._tuple(r, rel, None, keys_only=marker == "K")
                marker = r.byte()
            if marker != "N":
                raise DecodeError("update without a new tuple")
            new = self._tuple(r, rel, old)
            if old is None:
                old = {c.name: new.get(c.name) for c in rel.columns if c.key}
            return Change("UPDATE", rel, self.commit_timestamp, new, old)
        if tag == "D":
            rel = self._rel(r.uint32())
            marker = r.byte()
            if marker not in ("K", "O"):
                raise DecodeError("delete without an old tuple")
            old = self._tuple(r, rel, None, keys_only=marker == "K")
            return Change("DELETE", rel, self.commit_timestamp, None, old)
        if tag in "CTYOM":
            return None
        raise DecodeError(f"unknown pgoutput message {tag!r}")

    def _rel(self, oid: int) -> Relation:
        rel = self.relations.get(oid)
        if rel is None:
            raise DecodeError(f"change for relation {oid} before its Relation message")
        return rel

    def _relation(self, r: _Reader) -> None:
        oid = r.uint32()
        schema = r.cstring()
        table = r.cstring()
        ident = r.byte()
        columns = []
        for _ in range(r.int16()):
            flags = r.take(1)[0]
            name = r.cstring()
            type_oid = r.uint32()
            r.int32()  # typmod
            columns.append(Column(name, type_oid, bool(flags & 1)))
        self.relations[oid] = Relation(oid, schema or "public", table, ident, tuple(columns))

    @staticmethod
    def _tuple(
        r: _Reader, rel: Relation, fallback: dict[str, Any] | None, *, keys_only: bool = False
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        count = r.int16()
        for i in range(count):
            col = rel.columns[i] if i < len(rel.columns) else Column(f"col{i}", 25, False)
            kind = r.byte()
            if kind == "n":
                if not keys_only or col.key:
                    values[col.name] = None
            elif kind == "u":  # unchanged TOAST: only known from a full old image
                if fallback is not None and col.name in fallback:
                    values[col.name] = fallback[col.name]
            elif kind == "t":
                text = r.take(r.int32()).decode()
                if not keys_only or col.key:
                    values[col.name] = to_json_value(col.type_oid, text)
            elif kind == "b":
                r.take(r.int32())
            else:
                raise DecodeError(f"unknown tuple column kind {kind!r}")
        return values
