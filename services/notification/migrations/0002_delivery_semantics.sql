-- Delivery semantics (#5): attempts recorded before each provider call, deferrals (rate limits,
-- quiet hours, an open circuit breaker), urgency, delivery receipts, WeChat fallback.
ALTER TABLE deliveries
    ADD COLUMN urgent          boolean NOT NULL DEFAULT false,
    ADD COLUMN deferred_reason text,
    ADD COLUMN fallback_of     uuid,
    ADD COLUMN error_code      text,
    ADD COLUMN failed_at       timestamptz,
    ADD COLUMN report_status   text,
    ADD COLUMN reported_at     timestamptz;

CREATE INDEX deliveries_provider_message ON deliveries (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- One row per provider call, inserted (and committed) before the call, its outcome written
-- after it. A row left without outcome is a call whose sender died: its result is unknown.
-- Rows that went (or may have gone) out count against the per-number limits.
CREATE TABLE delivery_attempts (
    delivery_id         uuid        NOT NULL REFERENCES deliveries (id),
    attempt             integer     NOT NULL,
    channel             text        NOT NULL,
    provider            text        NOT NULL,
    rate_key            text,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    outcome             text CHECK (outcome IN ('sent', 'retry', 'failed', 'unknown')),
    code                text,
    provider_message_id text,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE INDEX delivery_attempts_rate ON delivery_attempts (rate_key, started_at)
    WHERE rate_key IS NOT NULL;
CREATE INDEX delivery_attempts_open ON delivery_attempts (delivery_id) WHERE outcome IS NULL;

-- How to reach the voter of an opinion (voter_contact.recorded on minyi.contact). Personal
-- data: read only to send, never logged, never returned by the API.
CREATE TABLE voter_contacts (
    opinion_id      uuid PRIMARY KEY,
    phone_e164      text,
    wechat_openid   text,
    wechat_opted_in boolean     NOT NULL DEFAULT false,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- Station heads and deputy heads are reached as a group per station.
ALTER TABLE contacts ADD COLUMN group_ref text;
CREATE INDEX contacts_group ON contacts (recipient_kind, group_ref);

-- The WeChat access token, shared by every worker; refreshed under a row lock.
CREATE TABLE wechat_tokens (
    app_id       text PRIMARY KEY,
    access_token text        NOT NULL,
    expires_at   timestamptz NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);

-- Status reports (delivery receipts) as the providers called them back.
CREATE TABLE delivery_reports (
    provider            text        NOT NULL,
    provider_message_id text        NOT NULL,
    delivery_id         uuid,
    delivered           boolean     NOT NULL,
    status_code         text        NOT NULL,
    reported_at         timestamptz NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, provider_message_id)
);
