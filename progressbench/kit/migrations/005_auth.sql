-- The sign-in service (/auth/v1 on the API): users and their refresh tokens.
--
-- Passwords are scrypt hashes (progressbench.core.identity); refresh tokens
-- are stored as SHA-256 digests only. A refresh token is single-use: using it
-- revokes it and issues its successor in the same session (rotation); logout
-- revokes every token of the session.

CREATE TABLE auth_users (
    id              uuid        PRIMARY KEY,
    email           text        NOT NULL UNIQUE,
    password_hash   text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_sign_in_at timestamptz
);

CREATE TABLE auth_refresh_tokens (
    id           bigserial   PRIMARY KEY,
    token_digest text        NOT NULL UNIQUE,
    user_id      uuid        NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    session_id   uuid        NOT NULL,
    revoked      boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX auth_refresh_tokens_session_idx ON auth_refresh_tokens (session_id);
