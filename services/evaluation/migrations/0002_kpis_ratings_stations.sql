-- Issue #6: per-case facts for the KPIs, the KPI counters, voter ratings, evaluations of
-- handling (评议), deputies' report-back sessions (述职评议) and station activity.

-- Every new column is order-independent: first/last by the event's own timestamp, booleans
-- by OR, counts of distinct events (the inbox makes each event count once).
ALTER TABLE case_facts
    ADD COLUMN dims_at                 timestamptz,
    ADD COLUMN is_invitation           boolean NOT NULL DEFAULT false,
    ADD COLUMN acknowledged_at         timestamptz,
    ADD COLUMN acknowledged_on_time    boolean NOT NULL DEFAULT false,
    ADD COLUMN extension_granted       boolean NOT NULL DEFAULT false,
    ADD COLUMN extension_decided_at    timestamptz,
    ADD COLUMN extended_due_at         timestamptz,
    ADD COLUMN returns                 integer NOT NULL DEFAULT 0,
    ADD COLUMN last_returned_at        timestamptz,
    ADD COLUMN completions             integer NOT NULL DEFAULT 0,
    ADD COLUMN first_completed_at      timestamptz,
    ADD COLUMN last_completed_at       timestamptz,
    ADD COLUMN last_completed_on_time  boolean NOT NULL DEFAULT false,
    ADD COLUMN reopens                 integer NOT NULL DEFAULT 0,
    ADD COLUMN last_reopened_at        timestamptz,
    ADD COLUMN overdue_acknowledge     boolean NOT NULL DEFAULT false,
    ADD COLUMN overdue_complete        boolean NOT NULL DEFAULT false,
    ADD COLUMN closed_at               timestamptz,
    ADD COLUMN rating_level            text,
    ADD COLUMN rating_score            integer,
    ADD COLUMN rated_at                timestamptz;

-- One row per (dimension, key, month of assignment, Asia/Shanghai), kept by applying the
-- delta between a case's contribution before and after each event (no rescans).
CREATE TABLE kpi_counters (
    dimension            text    NOT NULL,  -- department | station | town | category | city
    key                  text    NOT NULL,
    month                text    NOT NULL,  -- YYYY-MM
    assigned             integer NOT NULL DEFAULT 0,
    acknowledged         integer NOT NULL DEFAULT 0,
    acknowledged_on_time integer NOT NULL DEFAULT 0,
    completed            integer NOT NULL DEFAULT 0,
    completed_on_time    integer NOT NULL DEFAULT 0,
    rated                integer NOT NULL DEFAULT 0,
    satisfied            integer NOT NULL DEFAULT 0,
    basically_satisfied  integer NOT NULL DEFAULT 0,
    unsatisfied          integer NOT NULL DEFAULT 0,
    returned             integer NOT NULL DEFAULT 0,
    reopened             integer NOT NULL DEFAULT 0,
    overdue              integer NOT NULL DEFAULT 0,
    PRIMARY KEY (dimension, key, month)
);

CREATE INDEX kpi_counters_month ON kpi_counters (month, dimension);

-- One rating link per case (created on its first completion).
CREATE TABLE rating_invitations (
    case_id        uuid PRIMARY KEY,
    opinion_id     uuid        NOT NULL,
    token_id       text        NOT NULL UNIQUE,  -- the link's jti
    correlation_id uuid        NOT NULL,
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- One rating per case. The comment is the voter's text: never logged, never in an event.
CREATE TABLE ratings (
    case_id          uuid PRIMARY KEY,
    opinion_id       uuid        NOT NULL,
    department_id    text,
    level            text        NOT NULL,
    score            integer,
    comment          text,
    reopen_requested boolean     NOT NULL,
    event_id         uuid        NOT NULL,
    rated_at         timestamptz NOT NULL
);

-- Evaluations of a department's handling of an invitation (评议), one per evaluator and case.
CREATE TABLE handling_evaluations (
    case_id        uuid        NOT NULL,
    evaluator_kind text        NOT NULL,  -- station | committee
    evaluator_id   text        NOT NULL,
    evaluated_by   text        NOT NULL,  -- the signed-in subject
    department_id  text,
    score          integer     NOT NULL,
    comment        text,
    event_id       uuid        NOT NULL,
    evaluated_at   timestamptz NOT NULL,
    PRIMARY KEY (case_id, evaluator_kind, evaluator_id)
);

-- Deputies' report-back sessions (述职评议) and the voters' on-site scores (one per voter).
CREATE TABLE report_back_sessions (
    session_id  uuid PRIMARY KEY,
    deputy_id   text        NOT NULL,
    station_id  text,
    held_on     date        NOT NULL,
    title       text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE report_back_scores (
    session_id  uuid        NOT NULL REFERENCES report_back_sessions (session_id),
    voter_ref   text        NOT NULL,  -- the ballot's number, not a person's name
    score       integer     NOT NULL,
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, voter_ref)
);

-- Stations (from the reference data and from their activity) and their activity records.
CREATE TABLE stations (
    station_id text PRIMARY KEY,
    town_id    text    NOT NULL,
    name       text,
    online     boolean NOT NULL DEFAULT false
);

CREATE TABLE station_activities (
    activity_id   uuid PRIMARY KEY,
    station_id    text        NOT NULL,
    town_id       text        NOT NULL,
    kind          text        NOT NULL,
    activity_date date        NOT NULL,
    deputies      integer     NOT NULL,
    visitor_count integer     NOT NULL,
    issues        integer     NOT NULL,
    recorded_at   timestamptz NOT NULL
);

CREATE INDEX station_activities_date ON station_activities (activity_date, station_id);
