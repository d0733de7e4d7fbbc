"""pgoutput protocol-v1 decoding into the ``data`` of Realtime ``postgres_changes`` frames."""

from __future__ import annotations

import struct

import pytest
from progressbench.transports.realtime.pgoutput import DecodeError, Decoder, commit_time_iso, to_json_value

# A job_events-like relation: job_id uuid (key), seq int4 (key), kind, payload jsonb, committed_at
COLUMNS = [("job_id", 2950, True), ("seq", 23, True), ("kind", 25, False), ("payload", 3802, False),
           ("committed_at", 1184, False)]  # fmt: skip
OID = 16390
JOB = "3f1c2a9e-6b0d-4a51-9d7e-0c2b8e1f4a77"


def _cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def relation(ident: bytes = b"d") -> bytes:
    body = b"R" + struct.pack("!I", OID) + _cstr("public") + _cstr("job_events") + ident
    body += struct.pack("!h", len(COLUMNS))
    for name, type_oid, key in COLUMNS:
        body += bytes([1 if key else 0]) + _cstr(name) + struct.pack("!Ii", type_oid, -1)
    return body


def tuple_data(values: list[str | bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v == b"u":
            out += b"u"
        else:
            assert isinstance(v, str)
            raw = v.encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


ROW: list[str | bytes | None] = [JOB, "3", "step", '{"i": 3}', "2026-11-23 05:15:50.123456+00"]


def begin(micros: int) -> bytes:
    return b"B" + struct.pack("!qqI", 0x16B3748, micros, 731)


def test_insert_becomes_a_realtime_record_with_the_commit_time() -> None:
    """B gives the commit timestamp, R the columns, I the row; values are JSON-typed."""
    d = Decoder()
    assert d.feed(begin(817_000_000_123_456)) is None
    assert d.feed(relation()) is None
    change = d.feed(b"I" + struct.pack("!I", OID) + b"N" + tuple_data(ROW))
    assert change is not None and change.kind == "INSERT"
    data = change.data()
    assert list(data) == ["columns", "commit_timestamp", "errors", "schema", "table", "record", "type"]
    assert data["commit_timestamp"] == commit_time_iso(817_000_000_123_456)
    assert data["commit_timestamp"].endswith("Z") and data["errors"] is None
    assert data["record"] == {
        "job_id": JOB,
        "seq": 3,
        "kind": "step",
        "payload": {"i": 3},
        "committed_at": "2026-11-23T05:15:50.123456+00:00",
    }
    assert data["columns"][1] == {"name": "seq", "type": "int4"}
    assert change.key == {"job_id": JOB, "seq": 3}
    assert d.feed(b"C" + b"\0" * 25) is None


def test_update_without_old_tuple_copies_the_key_and_delete_keeps_only_the_key() -> None:
    """Default replica identity: UPDATE old_record = PK from the new row; DELETE has no record."""
    d = Decoder()
    d.feed(begin(0))
    d.feed(relation())
    update = d.feed(b"U" + struct.pack("!I", OID) + b"N" + tuple_data(ROW))
    assert update is not None and update.kind == "UPDATE"
    assert update.old_record == {"job_id": JOB, "seq": 3}
    key_only: list[str | bytes | None] = [JOB, "3", None, None, None]
    delete = d.feed(b"D" + struct.pack("!I", OID) + b"K" + tuple_data(key_only))
    assert delete is not None and delete.kind == "DELETE"
    assert delete.record is None and delete.old_record == {"job_id": JOB, "seq": 3}
    assert "record" not in delete.data() and delete.data()["type"] == "DELETE"
    assert delete.data()["commit_timestamp"] == "2000-01-01T00:00:00.000Z"


def test_unchanged_toast_is_filled_from_a_full_old_image_or_omitted() -> None:
    """``u`` columns come from the O tuple when there is one, else they are left out."""
    d = Decoder()
    d.feed(begin(0))
    d.feed(relation(b"f"))
    new: list[str | bytes | None] = [JOB, "3", "done", b"u", "2026-11-23 05:15:50+00"]
    plain = d.feed(b"U" + struct.pack("!I", OID) + b"N" + tuple_data(new))
    assert plain is not None and plain.record is not None and "payload" not in plain.record
    full = d.feed(b"U" + struct.pack("!I", OID) + b"O" + tuple_data(ROW) + b"N" + tuple_data(new))
    assert full is not None and full.record is not None
    assert full.record["payload"] == {"i": 3} and full.record["kind"] == "done"
    assert full.old_record is not None and full.old_record["kind"] == "step"


def test_change_before_its_relation_and_unknown_messages_are_errors() -> None:
    """A change for an unknown relation oid, or an unknown tag, raises DecodeError."""
    with pytest.raises(DecodeError):
        Decoder().feed(b"I" + struct.pack("!I", OID) + b"N" + tuple_data(ROW))
    with pytest.raises(DecodeError):
        Decoder().feed(b"Z")
    with pytest.raises(DecodeError):
        Decoder().feed(b"B\0\0")
    assert Decoder().feed(b"T" + b"\0" * 9) is None


@pytest.mark.parametrize(
    ("oid", "text", "value"),
    [(20, "42", 42), (16, "t", True), (16, "f", False), (701, "1.5", 1.5), (1700, "7", 7),
     (114, "[1,2]", [1, 2]), (25, "x", "x"), (2950, JOB, JOB),
     (1184, "2026-01-02 03:04:05.678+00", "2026-01-02T03:04:05.678+00:00")],
)  # fmt: skip
def test_values_are_converted_like_to_jsonb(oid: int, text: str, value: object) -> None:
    """Numbers stay numbers, bools booleans, json nested, timestamps ISO strings."""
    assert to_json_value(oid, text) == value
