-- Issue #4: the case's whole life, durable deadline timers, the working-day calendar,
-- accounts, triage rules and aggregated (common) cases.

ALTER TABLE cases
    ALTER COLUMN opinion_id DROP NOT NULL,
    ALTER COLUMN assigned_at DROP NOT NULL,
    ALTER COLUMN acknowledge_due_at DROP NOT NULL,
    ALTER COLUMN complete_due_at DROP NOT NULL,
    ADD COLUMN lead_opinion_id uuid,
    ADD COLUMN classification text NOT NULL DEFAULT 'individual'
        CHECK (classification IN ('individual', 'common', 'major')),
    ADD COLUMN is_invitation boolean NOT NULL DEFAULT false,
    ADD COLUMN generation integer NOT NULL DEFAULT 0,
    ADD COLUMN original_complete_due_at timestamptz,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN responsible_person text,
    ADD COLUMN responsible_contact text,
    ADD COLUMN planned_completion_date date,
    ADD COLUMN extension_reason text,
    ADD COLUMN extension_requested_due_at timestamptz,
    ADD COLUMN extensions_granted integer NOT NULL DEFAULT 0,
    ADD COLUMN completed_at timestamptz,
    ADD COLUMN handling_situation text,
    ADD COLUMN handling_result text,
    ADD COLUMN completion_date date,
    ADD COLUMN reopen_count integer NOT NULL DEFAULT 0 CHECK (reopen_count <= 1),
    ADD COLUMN closed_at timestamptz,
    ADD COLUMN satisfaction text;

UPDATE cases SET lead_opinion_id = opinion_id WHERE lead_opinion_id IS NULL;
ALTER TABLE cases ALTER COLUMN lead_opinion_id SET NOT NULL;

CREATE INDEX cases_triage_window ON cases (category_id, town_id, assigned_at)
    WHERE classification = 'individual';

-- The department that held the case at each step (returns are counted per department).
ALTER TABLE case_transitions
    ADD COLUMN actor_role text,
    ADD COLUMN department_id text;

CREATE INDEX case_transitions_returns ON case_transitions (department_id)
    WHERE to_state = 'returned';

-- An aggregated suggestion (common problem) and the cases of the opinions it gathers.
CREATE TABLE case_links (
    aggregate_case_id uuid        NOT NULL REFERENCES cases (id),
    case_id           uuid        NOT NULL UNIQUE REFERENCES cases (id),
    opinion_id        uuid        NOT NULL,
    linked_at         timestamptz NOT NULL,
    PRIMARY KEY (aggregate_case_id, case_id)
);

-- Durable deadline timers: planned with the case, claimed FOR UPDATE SKIP LOCKED through the
-- partial index of unfired rows (the claim never looks at fired rows or at open cases whose
-- timers are not yet due), fired once: the event goes to the outbox in the same transaction.
CREATE TABLE deadline_timers (
    id              bigserial PRIMARY KEY,
    case_id         uuid        NOT NULL REFERENCES cases (id),
    deadline        text        NOT NULL CHECK (deadline IN ('acknowledge', 'complete')),
    action          text        NOT NULL CHECK (action IN ('reminder', 'overdue', 'escalation')),
    deadline_due_at timestamptz NOT NULL,
    due_at          timestamptz NOT NULL,
    dedupe_key      text        NOT NULL UNIQUE,
    event_id        uuid        NOT NULL,
    fired_at        timestamptz,
    outcome         text CHECK (outcome IN ('published', 'skipped')),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deadline_timers_due ON deadline_timers (due_at) WHERE fired_at IS NULL;
CREATE INDEX deadline_timers_case ON deadline_timers (case_id) WHERE fired_at IS NULL;

-- Working days: seeded from chinese-calendar for the years it knows; edit it for the others.
CREATE TABLE working_calendar (
    day        date PRIMARY KEY,
    is_working boolean     NOT NULL,
    note       text,
    source     text        NOT NULL DEFAULT 'chinese-calendar',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Who may sign in: departments, stations, the committee, operators, admins.
CREATE TABLE accounts (
    client_id     text PRIMARY KEY,
    secret_hash   text        NOT NULL,
    role          text        NOT NULL
        CHECK (role IN ('department', 'station', 'committee', 'operator', 'admin')),
    department_id text REFERENCES departments (id),
    station_id    text,
    active        boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'department') = (department_id IS NOT NULL)),
    CHECK ((role = 'station') = (station_id IS NOT NULL))
);

-- Keyword rules for triage: a category for uncategorised text, or a major problem.
CREATE TABLE triage_rules (
    id          bigserial PRIMARY KEY,
    keyword     text    NOT NULL,
    category_id text,
    major       boolean NOT NULL DEFAULT false,
    priority    integer NOT NULL DEFAULT 100,
    CHECK (major OR category_id IS NOT NULL),
    UNIQUE NULLS NOT DISTINCT (keyword, category_id, major)
);
