-- Station activity records (台账): reception batches, visits, joint sessions, study, other;
-- each published as station.activity_recorded in the same transaction (outbox).
CREATE TABLE station_activities (
    id            uuid        PRIMARY KEY,
    station_id    text        NOT NULL REFERENCES stations (id),
    town_id       text        NOT NULL REFERENCES towns (id),
    kind          text        NOT NULL,
    activity_date date        NOT NULL,
    deputy_ids    text[]      NOT NULL DEFAULT '{}',
    visitor_count integer     NOT NULL CHECK (visitor_count >= 0),
    opinion_ids   uuid[]      NOT NULL DEFAULT '{}',
    notes         text,
    client_id     text,
    recorded_by   text        NOT NULL,
    recorded_at   timestamptz NOT NULL,
    UNIQUE (station_id, client_id)
);
CREATE INDEX station_activities_station_date ON station_activities (station_id, activity_date);

-- Moves of a station's monthly reception day (活动日), announced ≥ 3 days ahead; the latest
-- change (by seq) of a month is that month's reception date (else the station's published rule).
CREATE TABLE reception_day_changes (
    id            uuid        PRIMARY KEY,
    seq           bigint      GENERATED ALWAYS AS IDENTITY UNIQUE, -- the order of the changes
    station_id    text        NOT NULL REFERENCES stations (id),
    month         text        NOT NULL,
    previous_date date,
    new_date      date        NOT NULL,
    reason        text        NOT NULL,
    announced_by  text        NOT NULL,
    announced_at  timestamptz NOT NULL
);
CREATE INDEX reception_day_changes_station_month
    ON reception_day_changes (station_id, month, seq);

-- The operator console's counts per day and channel (by when the voter raised it).
CREATE INDEX opinions_submitted ON opinions (submitted_at);
CREATE INDEX opinions_station_submitted ON opinions (station_id, submitted_at);
