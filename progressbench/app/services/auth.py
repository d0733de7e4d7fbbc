"""The sign-in service on the API: a GoTrue-compatible subset under ``/auth/v1``.

Supabase Auth (GoTrue) is what a phone app signs in with before it talks to
Realtime or an API route; this is the part of its HTTP API the phones use,
with its JSON shapes, so the official client can point at it:

* ``POST /auth/v1/signup`` ``{email, password}`` — creates the user
  (autoconfirmed) and answers a session;
* ``POST /auth/v1/token?grant_type=password`` ``{email, password}`` and
  ``?grant_type=refresh_token`` ``{refresh_token}`` — a session: ``{access_token,
  token_type: "bearer", expires_in, expires_at, refresh_token, user}``. A
  refresh token is single-use: it is rotated, and a reused one revokes its
  session. Every session answer also sets the access token as an ``HttpOnly``,
  ``SameSite=Lax`` cookie (``identity.SESSION_COOKIE``) that the event stream
  accepts from browsers;
* ``GET /auth/v1/user`` (bearer access token) — the user object;
* ``POST /auth/v1/logout`` (bearer) — revokes the session's refresh tokens
  (``204``) and clears the session cookie. Access tokens already issued stay valid until their ``exp``, as
  GoTrue's stateless JWTs do; ``/user`` checks the session and refuses them.

Errors use GoTrue's shape ``{"code": <status>, "error_code": "...", "msg":
"..."}`` with its codes (``user_already_exists``, ``weak_password``,
``invalid_credentials``, ``refresh_token_not_found``,
``refresh_token_already_used``, ``no_authorization``, ``bad_jwt``,
``session_not_found``, ``validation_failed``). Source: Supabase Auth API and
error-code documentation (supabase.com/docs/guides/auth/debugging/error-codes),
read 2026-11.

Token lifetimes are wall-clock (``progressbench.core.identity``): the run's
time scale does not shorten them. The password hash's work factor does follow
it (``identity.scrypt_n``): a sign-up burst costs the compressed run the share
of CPU it costs at scale 1, not ten times that.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from progressbench.core import identity, tokens
from progressbench.kit.context import ServiceContext
from progressbench.kit.users import EmailTaken, RefreshRefused, UserRow, UserStore

T = TypeVar("T")

PREFIX = "/auth/v1"
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{1,63}$")
MAX_PASSWORD_LEN = 72  # GoTrue (bcrypt) refuses longer ones; kept for compatibility

_REFRESH_MESSAGES = {
    "refresh_token_not_found": "Invalid Refresh Token: Refresh Token Not Found",
    "refresh_token_already_used": "Invalid Refresh Token: Already Used",
    "session_expired": "Invalid Refresh Token: Session Expired",
    "user_not_found": "User from sub claim in JWT does not exist",
}


def error(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"code": status, "error_code": code, "msg": msg}, status_code=status)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def user_json(user: UserRow) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "aud": identity.USER_AUDIENCE,
        "role": identity.USER_ROLE,
        "email": user.email,
        "email_confirmed_at": _iso(user.created_at),
        "phone": "",
        "confirmed_at": _iso(user.created_at),
        "last_sign_in_at": _iso(user.last_sign_in_at),
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "identities": [],
        "created_at": _iso(user.created_at),
        "updated_at": _iso(user.updated_at),
        "is_anonymous": False,
    }


async def _body(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _credentials(body: dict[str, Any] | None) -> tuple[str, str] | JSONResponse:
    if body is None:
        return error(400, "validation_failed", "Could not parse request body as JSON")
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        return error(400, "validation_failed", "email and password are required")
    email = email.strip().lower()
    if not EMAIL.match(email):
        return error(400, "validation_failed", "Unable to validate email address: invalid format")
    return email, password


def auth_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    users = UserStore(ctx.store.pool)
    secret = ctx.secret
    # Password hashing is CPU-bound (scrypt): at most this many at once, so a burst of
    # sign-ins queues here instead of piling threads onto a small machine.
    kdf_slots = asyncio.Semaphore(2)
    # New passwords are hashed at the run's scaled cost (see identity.scrypt_n); an unknown email
    # is checked against a dummy of the same cost, so the answer's timing does not tell.
    cost = identity.scrypt_n(ctx.config.timing.time_scale)
    dummy_hash = identity.hash_password("not-a-password-anyone-has", n=cost)

    async def kdf(fn: Callable[..., T], *args: str) -> T:
        async with kdf_slots:
            return await asyncio.to_thread(fn, *args)

    async def session(user: UserRow, session_id: uuid.UUID, refresh: str) -> JSONResponse:
        access, expires_at = identity.issue_access(secret, user.id, user.email, session_id)
        response = JSONResponse(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": identity.ACCESS_TTL_S,
                "expires_at": expires_at,
                "refresh_token": refresh,
                "user": user_json(user),
            }
        )
        # For browsers: an EventSource cannot send the bearer header, but it sends this cookie
        # (same site). HttpOnly keeps it from page scripts; Lax keeps it off other sites' requests;
        # it lives as long as the access token it carries. Job creation still needs the header.
        response.set_cookie(
            identity.SESSION_COOKIE,
            access,
            max_age=identity.ACCESS_TTL_S,
            path="/",
            httponly=True,
            samesite="lax",
        )
        return response

    async def open_session(user: UserRow) -> JSONResponse:
        refresh = identity.new_refresh_token()
        session_id = await users.start_session(user.id, identity.digest(refresh))
        fresh = await users.by_id(user.id) or user
        return await session(fresh, session_id, refresh)

    @router.post("/signup", response_model=None)
    async def signup(request: Request) -> JSONResponse:
        found = _credentials(await _body(request))
        if isinstance(found, JSONResponse):
            return found
        email, password = found
        if len(password) < identity.MIN_PASSWORD_LEN:
            return error(
                422,
                "weak_password",
                f"Password should be at least {identity.MIN_PASSWORD_LEN} characters.",
            )
        if len(password) > MAX_PASSWORD_LEN:
            return error(
                422, "validation_failed", f"Password cannot be longer than {MAX_PASSWORD_LEN} characters"
            )
        hashed = await kdf(functools.partial(identity.hash_password, n=cost), password)
        try:
            user = await users.create(email, hashed)
        except EmailTaken:
            return error(422, "user_already_exists", "User already registered")
        return await open_session(user)

    @router.post("/token", response_model=None)
    async def token(request: Request) -> JSONResponse:
        grant = request.query_params.get("grant_type", "")
        body = await _body(request)
        if grant == "password":
            found = _credentials(body)
            if isinstance(found, JSONResponse):
                return found
            email, password = found
            user = await users.by_email(email)
            # Hash even for an unknown email, so the answer's timing does not tell which.
            stored = user.password_hash if user is not None else dummy_hash
            ok = await kdf(identity.check_password, password, stored)
            if user is None or not ok:
                return error(400, "invalid_credentials", "Invalid login credentials")
            return await open_session(user)
        if grant == "refresh_token":
            raw = (body or {}).get("refresh_token")
            if not isinstance(raw, str) or not raw:
                return error(400, "validation_failed", "refresh_token is required")
            refresh = identity.new_refresh_token()
            try:
                user, session_id = await users.rotate(identity.digest(raw), identity.digest(refresh))
            except RefreshRefused as exc:
                return error(400, exc.code, _REFRESH_MESSAGES.get(exc.code, "Invalid Refresh Token"))
            return await session(user, session_id, refresh)
        return error(400, "validation_failed", "unsupported_grant_type")

    async def verified(request: Request) -> identity.User | JSONResponse:
        header = request.headers.get("authorization")
        if not header:
            return error(401, "no_authorization", "This endpoint requires a Bearer token")
        try:
            return identity.verify_access(secret, tokens.bearer(header))
        except tokens.TokenRejected as exc:
            return error(403, "bad_jwt", exc.reason)

    @router.get("/user", response_model=None)
    async def user(request: Request) -> JSONResponse:
        who = await verified(request)
        if isinstance(who, JSONResponse):
            return who
        if not await users.session_live(who.session_id):
            return error(403, "session_not_found", "Session from session_id claim in JWT does not exist")
        row = await users.by_id(who.id)
        if row is None:
            return error(403, "user_not_found", "User from sub claim in JWT does not exist")
        return JSONResponse(user_json(row))

    @router.post("/logout", response_model=None)
    async def logout(request: Request) -> Response:
        who = await verified(request)
        if isinstance(who, JSONResponse):
            return who
        await users.end_session(who.session_id)
        response = Response(status_code=204)
        response.delete_cookie(identity.SESSION_COOKIE, path="/", httponly=True, samesite="lax")
        return response

    return router
