-- Who can be reached, and how (department clerks, station heads, the committee).
CREATE TABLE contacts (
    recipient_kind text NOT NULL,
    recipient_ref  text NOT NULL,
    name           text NOT NULL,
    phone          text NOT NULL,
    PRIMARY KEY (recipient_kind, recipient_ref)
);

-- One row per (event, recipient, channel): the unique key is what makes "once per event and
-- recipient" hold however often the event is delivered.
CREATE TABLE deliveries (
    id                  uuid PRIMARY KEY,
    source_event_id     uuid        NOT NULL,
    correlation_id      uuid        NOT NULL,
    case_id             uuid,
    recipient_kind      text        NOT NULL,
    recipient_ref       text        NOT NULL,
    channel             text        NOT NULL,
    template            text        NOT NULL,
    params              jsonb       NOT NULL,
    status              text        NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts            integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    lease_until         timestamptz,
    provider            text,
    provider_message_id text,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    UNIQUE (source_event_id, recipient_kind, recipient_ref, channel)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_case ON deliveries (case_id);

CREATE FUNCTION deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_deliveries', '');
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_notify();
