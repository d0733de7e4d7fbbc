"""The sign-in service's state: ``auth_users`` and ``auth_refresh_tokens`` (migration 004).

The only module that touches those tables. Refresh tokens are kept as
digests (:func:`progressbench.core.identity.digest`); :meth:`UserStore.rotate`
consumes one and issues its successor in one transaction, so two concurrent
uses of the same token cannot both succeed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from psycopg.errors import UniqueViolation
from psycopg_pool import AsyncConnectionPool

from progressbench.core.identity import REFRESH_TTL_S

_USER_COLUMNS = "id, email, password_hash, created_at, updated_at, last_sign_in_at"


@dataclass(frozen=True, slots=True)
class UserRow:
    id: uuid.UUID
    email: str
    password_hash: str
    created_at: datetime
    updated_at: datetime
    last_sign_in_at: datetime | None


class EmailTaken(Exception):
    """Signup with an email that already has a user."""


class RefreshRefused(Exception):
    """A refresh token that is unknown, revoked (already used) or too old; ``code`` says which."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class UserStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def create(self, email: str, password_hash: str) -> UserRow:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    f"INSERT INTO auth_users (id, email, password_hash) VALUES (%s, %s, %s) "
                    f"RETURNING {_USER_COLUMNS}",
                    (uuid.uuid4(), email, password_hash),
                )
                row = await cur.fetchone()
        except UniqueViolation:
            raise EmailTaken(email) from None
        assert row is not None
        return UserRow(**cast(dict[str, Any], row))

    async def by_email(self, email: str) -> UserRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM auth_users WHERE email = %s", (email,))
            row = await cur.fetchone()
        return UserRow(**cast(dict[str, Any], row)) if row else None

    async def by_id(self, user_id: uuid.UUID) -> UserRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM auth_users WHERE id = %s", (user_id,))
            row = await cur.fetchone()
        return UserRow(**cast(dict[str, Any], row)) if row else None

    async def start_session(self, user_id: uuid.UUID, refresh_digest: str) -> uuid.UUID:
        """A new session with its first refresh token; stamps the sign-in time."""
        session_id = uuid.uuid4()
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO auth_refresh_tokens (token_digest, user_id, session_id) VALUES (%s, %s, %s)",
                (refresh_digest, user_id, session_id),
            )
            await conn.execute(
                "UPDATE auth_users SET last_sign_in_at = clock_timestamp() WHERE id = %s", (user_id,)
            )
        return session_id

    async def rotate(self, old_digest: str, new_digest: str) -> tuple[UserRow, uuid.UUID]:
        """Consume a refresh token and store its successor; the user and the session.

        A token used twice revokes its whole session (GoTrue's reuse
        detection, without its short reuse interval): whoever replays a
        stolen token logs the owner out rather than in.
        """
        refused: str | None = None
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT user_id, session_id, revoked, "
                "created_at < clock_timestamp() - make_interval(secs => %s) AS stale "
                "FROM auth_refresh_tokens WHERE token_digest = %s FOR UPDATE",
                (REFRESH_TTL_S, old_digest),
            )
            row = await cur.fetchone()
            found = cast(dict[str, Any], row) if row is not None else None
            if found is None:
                refused = "refresh_token_not_found"
            elif found["revoked"]:
                # Committed, not rolled back: the revocation must outlive this refusal.
                await conn.execute(
                    "UPDATE auth_refresh_tokens SET revoked = true WHERE session_id = %s",
                    (found["session_id"],),
                )
                refused = "refresh_token_already_used"
            elif found["stale"]:
                refused = "session_expired"
        if refused is not None or found is None:
            raise RefreshRefused(refused or "refresh_token_not_found")
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE auth_refresh_tokens SET revoked = true WHERE token_digest = %s AND NOT revoked",
                (old_digest,),
            )
            if cur.rowcount != 1:  # a concurrent use got there first
                raise RefreshRefused("refresh_token_already_used")
            await conn.execute(
                "INSERT INTO auth_refresh_tokens (token_digest, user_id, session_id) VALUES (%s, %s, %s)",
                (new_digest, found["user_id"], found["session_id"]),
            )
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM auth_users WHERE id = %s", (found["user_id"],)
            )
            user = await cur.fetchone()
        if user is None:
            raise RefreshRefused("user_not_found")
        return UserRow(**cast(dict[str, Any], user)), found["session_id"]

    async def session_live(self, session_id: uuid.UUID) -> bool:
        """A session with at least one unrevoked refresh token (logout revokes them all)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM auth_refresh_tokens WHERE session_id = %s AND NOT revoked LIMIT 1",
                (session_id,),
            )
            return await cur.fetchone() is not None

    async def end_session(self, session_id: uuid.UUID) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE auth_refresh_tokens SET revoked = true WHERE session_id = %s", (session_id,)
            )
