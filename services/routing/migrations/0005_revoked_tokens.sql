-- Issue #14: sessions that end at sign-out. A revoked token's id (`jti`) stays here until the
-- token would have expired anyway (`expires_at`); `POST /api/v1/auth/logout` adds a row and
-- deletes the expired ones, `GET /api/v1/auth/session` answers 401 for a listed token.

CREATE TABLE revoked_tokens (
    jti text PRIMARY KEY,
    subject text NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
