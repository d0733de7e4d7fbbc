"""Sans-I/O: the PostgREST query subset the phone's refetch uses, parsed into a plan or an error.

A supabase-js / supabase-py app refetches rows with
``table("job_events").select("*").eq("job_id", id).gt("seq", n).order("seq")``,
which the client sends as ``GET /rest/v1/job_events?select=*&job_id=eq.<id>&seq=gt.<n>&order=seq.asc``.
This module turns such a query string into a :class:`Query` (columns, filters,
order, limit) over a fixed set of exposed tables, or a :class:`RestError`
shaped like PostgREST's (``{"code", "message", "details", "hint"}`` plus the
HTTP status). It never builds SQL text from input: table and column names
must be in :data:`EXPOSED`, and values travel as parameters.

Supported: ``select`` (``*`` or a comma list of plain columns), filters
``eq neq gt gte lt lte`` (one per column and operator, ANDed), ``order``
(``col[.asc|.desc][.nullsfirst|.nullslast]``, comma list) and ``limit``;
``offset`` too, since the client's ``range()`` sends it. Everything else
PostgREST has (``like``, ``in``, ``is``, ``not.``, ``or=``, embedding, casts,
aliases, JSON paths...) is refused with a PGRST100 parse error that says it is
outside this subset, so nobody mistakes a silently ignored filter for an
answer. Error codes and texts follow PostgREST 12 (docs.postgrest.org,
"Errors" reference, read 2026-11).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Tables readable through ``/rest/v1``, with their columns (schema ``public``). Nothing else is
#: exposed: ``jobs`` holds other users' rows with no RLS policy, ``auth_*`` are the sign-in service's.
EXPOSED: Mapping[str, tuple[str, ...]] = {
    "job_events": ("job_id", "seq", "owner", "kind", "message", "payload", "committed_at"),
}
SCHEMA = "public"
#: Supabase's default "Max rows" (API settings): no answer carries more rows than this.
MAX_ROWS = 1000

OPERATORS: Mapping[str, str] = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
#: Operators PostgREST has that this subset refuses (named in the error so the refusal is clear).
KNOWN_UNSUPPORTED = frozenset(
    {"like", "ilike", "match", "imatch", "in", "is", "isdistinct", "fts", "plfts", "phfts", "wfts",
     "cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj", "not", "all", "any"}
)  # fmt: skip
#: Query parameters that are not filters.
RESERVED = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict", "and", "or"})
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class RestError(Exception):
    """A PostgREST-shaped error: the HTTP status and the JSON body's four fields."""

    status: int
    code: str
    message: str
    details: str | None = None
    hint: str | None = None

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details, "hint": self.hint}


@dataclass(frozen=True)
class Filter:
    column: str
    operator: str  # a key of OPERATORS
    value: str


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool = False
    nulls_first: bool | None = None


@dataclass(frozen=True)
class Query:
    table: str
    columns: tuple[str, ...]
    filters: tuple[Filter, ...] = ()
    order: tuple[Order, ...] = ()
    limit: int = MAX_ROWS
    offset: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def _parse_error(what: str, details: str) -> RestError:
    return RestError(400, "PGRST100", f'"failed to parse {what}"', details)


def _column(table: str, name: str) -> str:
    if name not in EXPOSED[table]:
        raise RestError(400, "42703", f"column {table}.{name} does not exist")
    return name


def table_of(name: str, schema: str | None = None) -> str:
    """The exposed table ``name`` (in ``schema``, default public), else PostgREST's 406/404."""
    if schema not in (None, "", SCHEMA):
        raise RestError(
            406, "PGRST106", f"The schema must be one of the following: {SCHEMA}", hint=None, details=None
        )
    if name not in EXPOSED:
        hint = "Perhaps you meant the table 'public.job_events'" if "event" in name.lower() else None
        raise RestError(
            404, "PGRST205", f"Could not find the table '{SCHEMA}.{name}' in the schema cache", None, hint
        )
    return name


def _select(table: str, raw: str | None) -> tuple[str, ...]:
    if raw is None or raw.strip() in ("", "*"):
        return EXPOSED[table]
    columns: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if name == "*":
            columns.extend(EXPOSED[table])
            continue
        if not _IDENT.match(name):
            raise _parse_error(
                "select parameter",
                f"{raw!r}: only '*' and plain column names are supported by this PostgREST subset "
                "(no aliases, casts, JSON paths or embedded resources)",
            )
        columns.append(_column(table, name))
    return tuple(dict.fromkeys(columns))


def _filter(table: str, column: str, raw: str) -> Filter:
    if not _IDENT.match(column):
        raise _parse_error(
            f"filter ({column})", "only plain column names can be filtered in this PostgREST subset"
        )
    operator, dot, value = raw.partition(".")
    if not dot or operator not in OPERATORS:
        supported = ", ".join(OPERATORS)
        if operator in KNOWN_UNSUPPORTED:
            details = (
                f'operator "{operator}" is not supported by this PostgREST subset (supported: {supported})'
            )
        else:
            details = f'unexpected "{raw[:40]}" expecting an operator ({supported})'
        raise _parse_error(f"filter ({raw[:60]})", details)
    return Filter(_column(table, column), operator, value)


def _order(table: str, raw: str) -> tuple[Order, ...]:
    terms = []
    for term in raw.split(","):
        name, *modifiers = term.strip().split(".")
        if not _IDENT.match(name) or len(modifiers) > 2:
            raise _parse_error(f"order ({raw[:60]})", "expected column[.asc|.desc][.nullsfirst|.nullslast]")
        descending, nulls = False, None
        for modifier in modifiers:
            if modifier in ("asc", "desc"):
                descending = modifier == "desc"
            elif modifier in ("nullsfirst", "nullslast"):
                nulls = modifier == "nullsfirst"
            else:
                raise _parse_error(
                    f"order ({raw[:60]})",
                    f'unexpected "{modifier}" expecting asc, desc, nullsfirst or nullslast',
                )
        terms.append(Order(_column(table, name), descending, nulls))
    return tuple(terms)


def _count(name: str, raw: str) -> int:
    if not raw.isdigit() or len(raw) > 9:
        raise _parse_error(f"{name} parameter ({raw[:20]})", f"{name} must be a non-negative integer")
    return int(raw)


def parse(table: str, params: Iterable[tuple[str, str]], schema: str | None = None) -> Query:
    """The query a ``GET /rest/v1/<table>?<params>`` asks for, or :class:`RestError`."""
    name = table_of(table, schema)
    select: str | None = None
    filters: list[Filter] = []
    order: tuple[Order, ...] = ()
    limit, offset = MAX_ROWS, 0
    for key, value in params:
        if key == "select":
            select = value
        elif key == "order":
            order = _order(name, value)
        elif key == "limit":
            limit = min(_count("limit", value), MAX_ROWS)
        elif key == "offset":
            offset = _count("offset", value)
        elif key in RESERVED or "." in key:
            raise _parse_error(
                f"{key} parameter",
                f'"{key}" is not supported by this PostgREST subset (logic trees, embedding)',
            )
        else:
            filters.append(_filter(name, key, value))
    return Query(name, _select(name, select), tuple(filters), order, limit, offset)


#: How a Postgres error's SQLSTATE maps to an HTTP status (PostgREST's table, the classes used here).
def status_for(sqlstate: str, authenticated: bool) -> int:
    if sqlstate == "42501":  # insufficient_privilege
        return 403 if authenticated else 401
    if sqlstate in ("42P01", "42883"):
        return 404
    if sqlstate.startswith(("22", "23", "42")):
        return 400
    if sqlstate.startswith(("53", "57")):
        return 503
    return 500
