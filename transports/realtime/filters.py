"""Realtime ``postgres_changes`` filters: ``column=op.value`` (pure, no I/O).

Conditions are joined by commas as AND (``"amount=gt.100,status=in.(a,b)"``);
ops are ``eq neq lt lte gt gte in is`` and ``like ilike`` with an optional
``not.`` prefix. Values are compared against the decoded WAL record: the
filter text is cast to the record value's type (number, bool, text), the way
Realtime casts the filter value to the column type in SQL. A condition on a
column the change does not carry never matches.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass

OPS = frozenset({"eq", "neq", "lt", "lte", "gt", "gte", "in", "is", "like", "ilike"})
MAX_IN_VALUES = 100
#: Longest filter text accepted (ours: Realtime states no figure; a phone's filter is ~50 characters).
MAX_FILTER_LENGTH = 1000
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FilterError(ValueError):
    """The filter text cannot be parsed (Realtime answers with a system error)."""


@dataclass(frozen=True, slots=True)
class Condition:
    column: str
    op: str
    value: str | tuple[str, ...] | None
    negate: bool = False


def _split_conditions(text: str) -> list[str]:
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_condition(text: str) -> Condition:
    column, sep, rest = text.partition("=")
    column = column.strip()
    if not sep or not _COLUMN.match(column):
        raise FilterError(f"Error parsing `filter` params: {text!r}")
    negate = rest.startswith("not.")
    if negate:
        rest = rest[4:]
    op, dot, value = rest.partition(".")
    if not dot or op not in OPS:
        raise FilterError(f"Error parsing `filter` params: unknown operator in {text!r}")
    if op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise FilterError(f"Error parsing `filter` params: in needs (a,b) in {text!r}")
        items = next(csv.reader([value[1:-1]], skipinitialspace=True), [])
        if len(items) > MAX_IN_VALUES:
            raise FilterError(f"Error parsing `filter` params: more than {MAX_IN_VALUES} values for in")
        return Condition(column, op, tuple(_unquote(v) for v in items), negate)
    if op == "is":
        if value not in ("null", "true", "false", "unknown"):
            raise FilterError(f"Error parsing `filter` params: is takes null/true/false/unknown in {text!r}")
        return Condition(column, op, value, negate)
    return Condition(column, op, _unquote(value), negate)


def parse_filter(text: object) -> tuple[Condition, ...]:
    if text is None or text == "":
        return ()
    if not isinstance(text, str):
        raise FilterError(f"Error parsing `filter` params: expected a string, got {type(text).__name__}")
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"Error parsing `filter` params: longer than {MAX_FILTER_LENGTH} characters")
    return tuple(parse_condition(part) for part in _split_conditions(text))


def _cast(filter_value: str, like: object) -> object:
    if isinstance(like, bool):
        return filter_value.lower() in ("t", "true", "1", "yes", "on")
    if isinstance(like, int):
        return int(filter_value)
    if isinstance(like, float):
        return float(filter_value)
    return filter_value


def _compare(op: str, actual: object, expected: object) -> bool:
    try:
        match op:
            case "eq":
                return actual == expected
            case "neq":
                return actual != expected
            case "lt":
                return bool(actual < expected)  # type: ignore[operator]
            case "lte":
                return bool(actual <= expected)  # type: ignore[operator]
            case "gt":
                return bool(actual > expected)  # type: ignore[operator]
            case "gte":
                return bool(actual >= expected)  # type: ignore[operator]
    except TypeError:
        return False
    return False


def _segment(piece: str, insensitive: bool) -> re.Pattern[str]:
    """One run of a like pattern between ``%``: literals and ``_``, each exactly one character."""
    body = "".join("." if c == "_" else re.escape(c) for c in piece)
    return re.compile(body, (re.IGNORECASE | re.DOTALL) if insensitive else re.DOTALL)


def _like(pattern: str, value: str, insensitive: bool) -> bool:
    """SQL ``LIKE`` without backtracking: the runs between ``%`` are found leftmost, in order.

    Each run has a fixed length (``_`` and literals are one character each), so
    the first run must sit at the start, the last at the end, and every middle
    run is taken at its leftmost place after the previous one (leftmost is
    never worse for what follows). Work is at most len(value) × len(pattern),
    unlike ``%`` compiled to ``.*``, which backtracks exponentially in the
    number of ``%`` (issue #13, probe 4).
    """
    pieces = pattern.split("%")
    if len(pieces) == 1:
        return _segment(pattern, insensitive).fullmatch(value) is not None
    first, *middle, last = pieces
    if len(first) + len(last) > len(value):
        return False
    if first and _segment(first, insensitive).match(value) is None:
        return False
    end = len(value) - len(last)
    if last and _segment(last, insensitive).fullmatch(value, end) is None:
        return False
    pos = len(first)
    for piece in middle:
        if not piece:
            continue
        found = _segment(piece, insensitive).search(value, pos, end)
        if found is None:
            return False
        pos = found.end()
    return True


def condition_matches(cond: Condition, record: Mapping[str, object]) -> bool:
    if cond.column not in record:
        return False
    actual = record[cond.column]
    if cond.op == "is":
        want = {"null": None, "true": True, "false": False, "unknown": None}[str(cond.value)]
        result = actual is want if want is None else actual == want
    elif actual is None:
        result = False
    elif cond.op == "in":
        assert isinstance(cond.value, tuple)
        try:
            result = any(_norm(actual) == _norm(_cast(v, actual)) for v in cond.value)
        except ValueError:
            result = False
    elif cond.op in ("like", "ilike"):
        result = _like(str(cond.value), str(actual), cond.op == "ilike")
    else:
        assert isinstance(cond.value, str)
        try:
            expected = _cast(cond.value, actual)
        except ValueError:
            return False
        result = _compare(cond.op, _norm(actual), _norm(expected))
    return not result if cond.negate else result


def norm_text(value: str) -> str:
    """Text as compared: uuids arrive lower-case from Postgres; a filter may spell them upper-case."""
    return value.lower() if len(value) == 36 and value.count("-") == 4 else value


def _norm(value: object) -> object:
    return norm_text(value) if isinstance(value, str) else value


def matches(conditions: tuple[Condition, ...], record: Mapping[str, object]) -> bool:
    return all(condition_matches(c, record) for c in conditions)
