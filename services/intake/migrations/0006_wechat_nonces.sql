-- Issue #14: WeChat callbacks are signed over (token, timestamp, nonce) only, so a captured
-- signed URL could be replayed. Each (timestamp, nonce) accepted within the freshness window
-- is remembered here (shared by every replica) with the hash of the body it came with: the
-- same pair again is refused unless it carries the very same body (WeChat's own retry).
-- Rows whose timestamp has left the window are purged by later callbacks.
CREATE TABLE wechat_nonces (
    timestamp   bigint      NOT NULL,
    nonce       text        NOT NULL,
    body_sha256 text        NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (timestamp, nonce)
);
