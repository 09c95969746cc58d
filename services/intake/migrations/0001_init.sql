CREATE TABLE towns (
    id   text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE stations (
    id      text PRIMARY KEY,
    town_id text NOT NULL REFERENCES towns (id),
    name    text NOT NULL,
    online  boolean NOT NULL DEFAULT false
);

CREATE TABLE categories (
    id   text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE deputies (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    level      text NOT NULL,
    station_id text NOT NULL REFERENCES stations (id)
);

CREATE TABLE opinions (
    id             uuid PRIMARY KEY,
    receipt_code   text        NOT NULL UNIQUE,
    channel        text        NOT NULL,
    station_id     text        NOT NULL REFERENCES stations (id),
    town_id        text        NOT NULL REFERENCES towns (id),
    category_id    text        REFERENCES categories (id),
    deputy_id      text        REFERENCES deputies (id),
    content        text        NOT NULL,
    voter_name     text,
    voter_phone    text,
    submitted_at   timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    correlation_id uuid        NOT NULL
);

CREATE INDEX opinions_station_received ON opinions (station_id, received_at);
