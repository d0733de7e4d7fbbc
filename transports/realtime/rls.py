"""The row-level-security checks of one batch of changes, as one query text (pure, no I/O).

For each change, every covering subscription must be authorised under its own
claims: ``set_config('role', ...)`` and ``set_config('request.jwt.claims',
...)`` (transaction-local), then ``SELECT exists(... WHERE <key> = ...)``, so
Postgres RLS decides. A role switch only applies to the *next* statement (a
statement's permissions are checked before it runs), so each identity needs a
statement of its own for the switch and one for its rows.

:func:`plan_checks` groups the checks of a batch by identity — the role and
the exact claims, since a policy may read any claim — and drops repeats of the
same row for the same identity (two channels of one token on one change, the
anon key's many sockets): each (row, identity) is asked once. :func:`batch_sql`
writes the whole batch as one multi-statement query (the simple query protocol:
one round trip, one implicit transaction, so every ``set_config`` ends with it
and an error rolls everything back): per identity, its switch and then one
``SELECT ARRAY[exists(...), ...]``. :meth:`CheckPlan.verdicts` maps the arrays
back to the checks in their order.

Why one text and not a pipeline of prepared statements: under load, each
await of a pipelined statement yields to an event loop serving hundreds of
sockets, and the batch's wall time grew with its statement count (a single
check took 35-45 ms on a loaded 2-core box; see the README's measurements).
Values go in as escaped string constants cast to the key column's type
(:func:`quote_literal`), identifiers quoted (:func:`quote_ident`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: Most ``exists`` terms in one SELECT: a bound on one statement's size (a batch is at most
#: the feed's 1,000 slot rows, so this splits only an identity with very many rows).
MAX_TERMS = 500


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a check runs as: the role claim and the claims JSON the policies read."""

    role: str
    claims_json: str


@dataclass(frozen=True, slots=True)
class RowRef:
    """One changed row: its table and its primary key (column, Postgres type, text value)."""

    schema: str
    table: str
    key: tuple[tuple[str, str, str | None], ...]


@dataclass
class CheckPlan:
    """Distinct rows per identity, and where each requested check finds its verdict."""

    groups: list[tuple[Identity, list[RowRef]]] = field(default_factory=list)
    #: For each requested check in order: (group index, position in that group's rows).
    slots: list[tuple[int, int]] = field(default_factory=list)

    @property
    def distinct(self) -> int:
        """How many (row, identity) questions Postgres is asked."""
        return sum(len(rows) for _, rows in self.groups)

    def verdicts(self, answers: Sequence[Sequence[bool]]) -> list[bool]:
        """Per requested check, the answer of its (row, identity); ``answers`` per group, in order."""
        if len(answers) != len(self.groups) or any(
            len(a) != len(rows) for a, (_, rows) in zip(answers, self.groups, strict=True)
        ):
            raise ValueError("answers do not match the plan's groups")
        return [bool(answers[g][i]) for g, i in self.slots]


def plan_checks(checks: Sequence[tuple[Identity, RowRef]]) -> CheckPlan:
    """Group ``checks`` by identity (first-seen order), each (row, identity) once."""
    plan = CheckPlan()
    group_of: dict[Identity, int] = {}
    position: list[dict[RowRef, int]] = []
    for identity, row in checks:
        g = group_of.get(identity)
        if g is None:
            g = group_of[identity] = len(plan.groups)
            plan.groups.append((identity, []))
            position.append({})
        i = position[g].get(row)
        if i is None:
            rows = plan.groups[g][1]
            i = position[g][row] = len(rows)
            rows.append(row)
        plan.slots.append((g, i))
    return plan


def quote_literal(value: str) -> str:
    """A Postgres string constant for ``value``, right whatever ``standard_conforming_strings`` is.

    The escape-string form (``E'...'``): backslashes and quotes doubled, nothing else
    special. NUL cannot be in a Postgres string, so it is refused (ValueError) rather
    than cut. Written here instead of :class:`psycopg.sql.Literal` because rendering a
    ``Composed`` of a batch cost ~0.4 ms per check, more than Postgres's answer.
    """
    if "\0" in value:
        raise ValueError("a NUL character cannot be sent to Postgres")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A Postgres quoted identifier (double quotes doubled)."""
    if "\0" in name:
        raise ValueError("a NUL character cannot be sent to Postgres")
    return '"' + name.replace('"', '""') + '"'


def _exists(row: RowRef) -> str:
    where = " AND ".join(
        f"{quote_ident(column)} = NULL::{type_name}"  # never true, as a NULL key parameter was
        if value is None
        else f"{quote_ident(column)} = {quote_literal(value)}::{type_name}"
        for column, type_name, value in row.key
    )
    return f"exists(SELECT 1 FROM {quote_ident(row.schema)}.{quote_ident(row.table)} WHERE {where})"


def batch_sql(plan: CheckPlan) -> tuple[str, list[tuple[int, int]]]:
    """The batch as one query text, and which result sets answer which group.

    Returns the query and, per result set it produces, ``(group, first row)``
    for a ``SELECT ARRAY[...]`` (its booleans are that group's rows from
    ``first row`` on), or ``(-1, 0)`` for a role switch, whose result is ignored.
    Key types come from the catalog (``format_type``), never from a client;
    every value is a quoted literal.
    """
    statements: list[str] = []
    results: list[tuple[int, int]] = []
    for g, (identity, rows) in enumerate(plan.groups):
        statements.append(
            f"SELECT set_config('role', {quote_literal(identity.role)}, true), "
            f"set_config('request.jwt.claims', {quote_literal(identity.claims_json)}, true)"
        )
        results.append((-1, 0))
        for start in range(0, len(rows), MAX_TERMS):
            terms = ", ".join(_exists(row) for row in rows[start : start + MAX_TERMS])
            statements.append(f"SELECT ARRAY[{terms}]")
            results.append((g, start))
    return "; ".join(statements), results


def collect(plan: CheckPlan, results: list[tuple[int, int]], sets: Sequence[object]) -> list[list[bool]]:
    """Assemble each group's answers from the result sets (one value per set, in order)."""
    if len(sets) != len(results):
        raise ValueError(f"expected {len(results)} result sets, got {len(sets)}")
    answers: list[list[bool]] = [[False] * len(rows) for _, rows in plan.groups]
    for (g, start), value in zip(results, sets, strict=True):
        if g < 0:
            continue
        expected = min(MAX_TERMS, len(plan.groups[g][1]) - start)
        if not isinstance(value, list) or len(value) != expected:
            raise ValueError("an exists batch did not return one boolean per row")
        answers[g][start : start + len(value)] = [bool(v) for v in value]
    return answers
