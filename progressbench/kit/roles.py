"""One Postgres role per service, with only the grants its code uses (issue #13, least privilege).

Every service used to connect as the superuser, so any of them could read
the sign-in table's password hashes or another service's tables. When the
testbed owns the database (the embedded server, or a ``DATABASE_URL`` whose
user may create roles), the supervisor instead creates, after migrations, one
``LOGIN`` role per service named ``pb_<service>_<run>``, with a password
generated for the run (stored as SCRAM by the server), and grants it what the
service declares in a ``grants.toml`` shipped next to its code: the core's
for the API and workers, each transport's for its own services (and for what
its routes need on the API and workers). The declarations are merged per
service; a service that declares nothing gets a role that can connect and
nothing else.

A ``grants.toml`` maps a service role to what it may do::

    [queue.tables]
    relay_tasks = ["SELECT", "INSERT", "UPDATE"]

    [realtime]
    member_of = ["anon", "authenticated"]   # it may SET ROLE to these
    attributes = ["REPLICATION"]            # role attributes, from ATTRIBUTES only
    settings = { log_min_messages = "fatal" }  # per-role defaults (ALTER ROLE ... SET)
    functions = ["pg_log_standby_snapshot"]  # EXECUTE on built-ins, from FUNCTIONS only

``sequences`` is like ``tables``. Role names carry a per-run suffix because
roles are cluster-wide: two runs (or two test stacks) on one server must not
share or reset each other's passwords; :func:`drop_service_roles` removes
them when the stack stops.

A user that cannot create roles (or grant what is declared) keeps the shared
URL for every service: :func:`provision` says why, once, and never fails.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from progressbench.core.errors import ConfigError

log = logging.getLogger(__name__)

TABLE_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
SEQUENCE_PRIVILEGES = frozenset({"USAGE", "SELECT", "UPDATE"})
#: Role attributes a service may ask for. REPLICATION is what logical decoding needs
#: (``pg_create_logical_replication_slot``, ``pg_logical_slot_get_binary_changes``): less than
#: superuser, and enough for the realtime server. BYPASSRLS is what Supabase's ``service_role``
#: has: the backend writing rows of every owner into a table with row-level security.
ATTRIBUTES = frozenset({"REPLICATION", "BYPASSRLS"})
#: Built-in functions a service may be granted EXECUTE on (revoked from PUBLIC by Postgres).
#: ``pg_log_standby_snapshot`` writes a running-transactions WAL record, which lets a logical
#: slot's restart point advance (the realtime feed, ``feed.py``); nothing else is granted.
FUNCTIONS = frozenset({"pg_log_standby_snapshot"})
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_KEYS = frozenset({"tables", "sequences", "member_of", "attributes", "settings", "functions"})


@dataclass(frozen=True)
class RoleGrants:
    """What one service may do in the database."""

    tables: Mapping[str, frozenset[str]] = field(default_factory=dict)
    sequences: Mapping[str, frozenset[str]] = field(default_factory=dict)
    member_of: frozenset[str] = frozenset()
    attributes: frozenset[str] = frozenset()
    settings: Mapping[str, str] = field(default_factory=dict)
    #: Built-in functions without arguments (``pg_catalog.<name>()``) it may EXECUTE.
    functions: frozenset[str] = frozenset()

    def merged(self, other: RoleGrants) -> RoleGrants:
        """The union of two declarations (two packages may each grant the API something)."""

        def union(
            a: Mapping[str, frozenset[str]], b: Mapping[str, frozenset[str]]
        ) -> dict[str, frozenset[str]]:
            return {k: a.get(k, frozenset()) | b.get(k, frozenset()) for k in {*a, *b}}

        return RoleGrants(
            tables=union(self.tables, other.tables),
            sequences=union(self.sequences, other.sequences),
            member_of=self.member_of | other.member_of,
            attributes=self.attributes | other.attributes,
            settings={**self.settings, **other.settings},
            functions=self.functions | other.functions,
        )


def _name(value: object, what: str, source: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(f"{source}: {what} {value!r} is not a plain lower-case SQL name")
    return value


def _privileges(value: object, allowed: frozenset[str], what: str, source: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: {what} must be a list of privileges")
    found = frozenset(v.upper() for v in value)
    if found - allowed:
        raise ConfigError(f"{source}: {what}: unknown privilege(s) {sorted(found - allowed)}")
    return found


def _names(value: object, what: str, source: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {what} must be a list")
    return frozenset(_name(v, what, source) for v in value)


def parse_grants(text: str, source: str) -> dict[str, RoleGrants]:
    """The declarations of one ``grants.toml``; ConfigError names the file and the bad entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    found: dict[str, RoleGrants] = {}
    for service, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - _KEYS:
            raise ConfigError(f"{source}: [{service}] may only have {sorted(_KEYS)}")
        tables = entry.get("tables", {})
        sequences = entry.get("sequences", {})
        settings = entry.get("settings", {})
        if not isinstance(tables, dict) or not isinstance(sequences, dict) or not isinstance(settings, dict):
            raise ConfigError(f"{source}: [{service}] tables, sequences and settings are tables")
        raw = entry.get("attributes", [])
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise ConfigError(f"{source}: [{service}] attributes must be a list")
        attributes = frozenset(a.upper() for a in raw)
        if attributes - ATTRIBUTES:
            raise ConfigError(f"{source}: [{service}] attributes must be among {sorted(ATTRIBUTES)}")
        functions = _names(entry.get("functions", []), "function", source)
        if functions - FUNCTIONS:
            raise ConfigError(f"{source}: [{service}] functions must be among {sorted(FUNCTIONS)}")
        found[service] = RoleGrants(
            tables={
                _name(t, "table", source): _privileges(p, TABLE_PRIVILEGES, t, source)
                for t, p in tables.items()
            },
            sequences={
                _name(s, "sequence", source): _privileges(p, SEQUENCE_PRIVILEGES, s, source)
                for s, p in sequences.items()
            },
            member_of=_names(entry.get("member_of", []), "role", source),
            functions=functions,
            attributes=attributes,
            settings={_name(k, "setting", source): str(v) for k, v in settings.items()},
        )
    return found


def merge_grants(declarations: Iterable[Mapping[str, RoleGrants]]) -> dict[str, RoleGrants]:
    merged: dict[str, RoleGrants] = {}
    for declared in declarations:
        for service, grants in declared.items():
            merged[service] = merged[service].merged(grants) if service in merged else grants
    return merged


def role_name(service: str, run: str) -> str:
    """``pb_<service>_<run>``: a SQL-safe name (``job-runner`` -> ``job_runner``)."""
    return f"pb_{re.sub(r'[^a-z0-9]+', '_', service.lower())}_{run}"[:63]


@dataclass(frozen=True)
class ServiceRoles:
    """The outcome of :func:`provision`: each service's URL, and the roles to drop later."""

    urls: Mapping[str, str]
    roles: tuple[str, ...] = ()
    #: Why every service shares the admin URL (None when each has its own role).
    note: str | None = None


def provision(admin_url: str, services: Iterable[str], grants: Mapping[str, RoleGrants]) -> ServiceRoles:
    """A role per service with its declared grants, or the shared URL for all (with a note why)."""
    wanted = list(dict.fromkeys(services))
    shared = ServiceRoles(urls={s: admin_url for s in wanted})
    run = secrets.token_hex(3)
    names = {s: role_name(s, run) for s in wanted}
    passwords = {s: secrets.token_urlsafe(24) for s in wanted}
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if not row or not row[0]:
                return _shared(shared, "its user may not create roles")
            with conn.transaction():
                for service in wanted:
                    _create(conn, names[service], passwords[service], grants.get(service, RoleGrants()))
    except psycopg.Error as exc:
        return _shared(shared, f"creating them failed: {_first_line(exc)}")
    urls = {s: make_conninfo(admin_url, user=names[s], password=passwords[s]) for s in wanted}
    log.info("services connect with their own roles: %s", ", ".join(names.values()))
    return ServiceRoles(urls=urls, roles=tuple(names.values()))


def _shared(shared: ServiceRoles, why: str) -> ServiceRoles:
    note = (
        f"every service connects to the database as the DATABASE_URL's user ({why}); "
        "per-service roles with least privilege need a user that may CREATE ROLE"
    )
    log.warning("%s", note)
    return ServiceRoles(urls=shared.urls, note=note)


def _create(
    conn: psycopg.Connection[tuple[object, ...]], role: str, password: str, grants: RoleGrants
) -> None:
    who = sql.Identifier(role)
    attributes = sql.SQL(" ").join(sql.SQL(a) for a in sorted(grants.attributes))
    # NOINHERIT: a role it may SET ROLE to (anon, authenticated) lends it nothing until it does.
    conn.execute(
        sql.SQL("CREATE ROLE {} LOGIN NOINHERIT {} PASSWORD {}").format(
            who, attributes, sql.Literal(password)
        )
    )
    dbname = conn.info.dbname
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), who))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(who))
    for kind, declared in (("TABLE", grants.tables), ("SEQUENCE", grants.sequences)):
        for name, privileges in sorted(declared.items()):
            conn.execute(
                sql.SQL("GRANT {} ON {} public.{} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(p) for p in sorted(privileges)),
                    sql.SQL(kind),
                    sql.Identifier(name),
                    who,
                )
            )
    for member_of in sorted(grants.member_of):
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), who))
    for function in sorted(grants.functions):
        # A server without the function (older Postgres) keeps going: the service copes without it.
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.{}() TO {}").format(
                        sql.Identifier(function), who
                    )
                )
        except psycopg.errors.UndefinedFunction:
            log.info("no function pg_catalog.%s() on this server for %s", function, role)
    for key, value in sorted(grants.settings.items()):
        # A nicety (quieter logs): a user allowed to create roles but not to set this keeps the default.
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(who, sql.Identifier(key), sql.Literal(value))
                )
        except psycopg.errors.InsufficientPrivilege:
            log.info("cannot set %s for %s (not a superuser)", key, role)


def drop_service_roles(admin_url: str, roles: Iterable[str]) -> None:
    """Drop the run's roles (their grants first); a failure is logged, never raised."""
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            for role in roles:
                with contextlib.suppress(psycopg.errors.UndefinedObject):
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    except psycopg.Error as exc:
        log.warning("could not drop the run's database roles: %s", _first_line(exc))


def url_user(url: str) -> str:
    """The user a connection string signs in as (for messages and tests)."""
    return str(conninfo_to_dict(url).get("user", ""))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
