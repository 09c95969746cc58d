-- Reference data maintained through the admin API and the CLI: retired records stay (opinions
-- name them) but new opinions may not; departments are kept here too (published to others).
ALTER TABLE towns ADD COLUMN retired_at timestamptz;
ALTER TABLE stations
    ADD COLUMN retired_at      timestamptz,
    ADD COLUMN head            text,
    ADD COLUMN liaison_officer text,
    ADD COLUMN reception_day   text;
ALTER TABLE categories
    ADD COLUMN retired_at timestamptz,
    ADD COLUMN case_kind  text NOT NULL DEFAULT 'general';
ALTER TABLE deputies ADD COLUMN retired_at timestamptz;

CREATE TABLE departments (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    contact_name  text NOT NULL,
    contact_phone text NOT NULL,
    retired_at    timestamptz
);
