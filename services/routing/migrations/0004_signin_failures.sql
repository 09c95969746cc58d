-- Issue #14: the sign-in limiter. Each failed (or in-flight) sign-in is a row, once for the
-- account it named and once for the client address it came from; an attempt is refused while
-- either has `signin_max_failures` rows inside the window. Rows older than the window are
-- purged by the attempts themselves. Shared by every routing replica.
CREATE TABLE signin_failures (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope     text        NOT NULL CHECK (scope IN ('account', 'address')),
    key       text        NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signin_failures_key ON signin_failures (scope, key, failed_at);
CREATE INDEX signin_failures_age ON signin_failures (failed_at);
