"""``GET /rest/v1/<table>`` on the API: the PostgREST subset a supabase client refetches with.

The official client's ``table("job_events").select("*").eq("job_id", id).gt("seq", n).order("seq")``
comes here (through the gateway, :mod:`progressbench.transports.realtime.gateway`) and runs the way
PostgREST runs it: one transaction that first sets the caller's role and claims
(``set_config('role', <role claim>, true)``, ``set_config('request.jwt.claims', <claims>, true)``,
Supabase's 8 s statement timeout for ``authenticated``, 3 s for ``anon``), then one
``SELECT ... json_agg`` over the exposed table. Row-level security decides what the caller sees:
the policy of migration ``002_realtime.sql`` (``owner = request.jwt.claims->>'sub'`` for
``authenticated``; none for ``anon``, who sees nothing). The services connect as the superuser,
which bypasses RLS; the ``SET ROLE`` of the transaction is what turns it on.

Credentials as Supabase's gateway + PostgREST check them: an ``apikey`` (header or query) that is
a JWT of this project is required (401 otherwise); ``Authorization: Bearer <jwt>`` picks the role,
else the apikey does. HS256 with the project secret, ``role`` and ``exp`` required, roles limited
to ``anon``/``authenticated`` (never a superuser). Every refusal is PostgREST-shaped JSON (see
:mod:`progressbench.transports.realtime.postgrest`); nothing but GET/HEAD is served (405 PGRST117).
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from progressbench.transports.realtime import postgrest
from progressbench.transports.realtime.auth import AuthError, Claims, verify
from progressbench.transports.realtime.postgrest import RestError
from psycopg import sql

from progressbench.core import tokens
from progressbench.kit.context import ServiceContext

log = logging.getLogger(__name__)

PREFIX = "/rest/v1"
#: Supabase's per-role statement timeouts (``authenticated`` 8 s, ``anon`` 3 s; wall clock).
STATEMENT_TIMEOUT = {"authenticated": "8s", "anon": "3s"}


def _error(exc: RestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def _claims(secret: str, request: Request) -> Claims:
    """The caller's verified claims (bearer token, else the apikey), or a 401 RestError."""
    apikey = request.headers.get("apikey") or request.query_params.get("apikey")
    if not apikey:
        raise RestError(401, "PGRST301", "No API key found in request", None,
                        "No `apikey` request header or url param was found.")  # fmt: skip
    header = request.headers.get("authorization")
    try:
        verify(secret, apikey)
        token = tokens.bearer(header) if header else apikey
        return verify(secret, token)
    except tokens.TokenRejected:
        raise RestError(401, "PGRST301", "Authorization header is not a Bearer token") from None
    except AuthError as exc:
        reason = exc.reason.removeprefix("InvalidJWTToken: ")
        if "expired" in reason:
            raise RestError(401, "PGRST303", "JWT expired", reason) from None
        if "is not allowed" in reason:
            raise RestError(401, "42501", f"permission denied to set role: {reason}") from None
        raise RestError(401, "PGRST301", reason) from None


def _statement(query: postgrest.Query) -> tuple[sql.Composed, list[Any]]:
    """``SELECT count, json_agg`` of the query; identifiers come from the exposed list only."""
    params: list[Any] = []
    where: list[sql.Composable] = []
    for item in query.filters:
        where.append(
            sql.SQL("{} {} %s").format(
                sql.Identifier(item.column), sql.SQL(postgrest.OPERATORS[item.operator])
            )
        )
        params.append(item.value)
    order = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(o.column),
            sql.SQL("DESC" if o.descending else "ASC"),
            sql.SQL("" if o.nulls_first is None else (" NULLS FIRST" if o.nulls_first else " NULLS LAST")),
        )
        for o in query.order
    ]
    inner = sql.SQL("SELECT {} FROM {}.{}{}{} LIMIT %s OFFSET %s").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in query.columns),
        sql.Identifier(postgrest.SCHEMA),
        sql.Identifier(query.table),
        sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order) if order else sql.SQL(""),
    )
    params += [query.limit, query.offset]
    statement = sql.SQL("SELECT count(*) AS n, coalesce(json_agg(t), '[]')::text AS body FROM ({}) t").format(
        inner
    )
    return statement, params


def rest_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    async def select(request: Request, table: str) -> Response:
        try:
            claims = _claims(ctx.secret, request)
            query = postgrest.parse(
                table, request.query_params.multi_items(), request.headers.get("accept-profile")
            )
        except RestError as exc:
            return _error(exc)
        statement, params = _statement(query)
        try:
            async with ctx.store.pool.connection() as conn, conn.transaction():
                await conn.execute(
                    "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true), "
                    "set_config('statement_timeout', %s, true), set_config('request.method', 'GET', true)",
                    (claims.role, json.dumps(claims.raw), STATEMENT_TIMEOUT.get(claims.role, "8s")),
                )
                cur = await conn.execute(statement, params)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            diag = exc.diag
            state = exc.sqlstate or "XX000"
            status = postgrest.status_for(state, claims.role == "authenticated")
            if status >= 500:
                log.warning("rest select on %s failed: %r", table, exc)
            message = diag.message_primary or type(exc).__name__
            return _error(RestError(status, state, message, diag.message_detail, diag.message_hint))
        ctx.meters.count_read(1)
        found = cast(dict[str, Any], row)
        count, body = int(found["n"]), str(found["body"])
        headers = {"content-range": f"{query.offset}-{query.offset + count - 1}/*" if count else "*/*"}
        if request.method == "HEAD":
            body = ""
        return Response(body, media_type="application/json; charset=utf-8", headers=headers)

    @router.api_route("/{table}", methods=["GET", "HEAD"], response_model=None)
    async def read(request: Request, table: str) -> Response:
        return await select(request, table)

    @router.api_route("/{table}", methods=["POST", "PATCH", "PUT", "DELETE"], response_model=None)
    async def write(request: Request, table: str) -> Response:
        return _error(
            RestError(
                405,
                "PGRST117",
                f"Unsupported HTTP method: {request.method}",
                "this PostgREST subset only reads",
            )
        )

    return router
