-- Who entered an opinion (staff subject), the WeChat sender, and the row key of offline imports
-- (file fingerprint + row, or an external id): importing a file twice adds nothing.
ALTER TABLE opinions
    ADD COLUMN wechat_openid text,
    ADD COLUMN entered_by    text,
    ADD COLUMN import_key    text UNIQUE;

-- Client-supplied idempotency keys (HTTP `Idempotency-Key`, WeChat MsgId): the receipt(s) given
-- the first time, replayed on a retry; written in the transaction of the opinions themselves.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- The voter's view of each case, from routing's and evaluation's events (one row per event).
CREATE TABLE case_stages (
    event_id       uuid        PRIMARY KEY,
    case_id        uuid        NOT NULL,
    correlation_id uuid        NOT NULL,
    stage          text        NOT NULL,
    at             timestamptz NOT NULL,
    detail         jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX case_stages_case ON case_stages (case_id);
CREATE INDEX case_stages_correlation ON case_stages (correlation_id);

-- Which opinions a case is about (events name them: case.assigned, case.triaged, …).
CREATE TABLE case_opinions (
    case_id    uuid NOT NULL,
    opinion_id uuid NOT NULL,
    PRIMARY KEY (case_id, opinion_id)
);
CREATE INDEX case_opinions_opinion ON case_opinions (opinion_id);
