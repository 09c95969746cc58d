CREATE TABLE departments (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    contact_name  text NOT NULL,
    contact_phone text NOT NULL
);

CREATE TABLE category_kinds (
    category_id text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('emergency', 'utilities', 'general', 'complex'))
);

CREATE TABLE routing_rules (
    id            bigserial PRIMARY KEY,
    category_id   text NOT NULL,
    town_id       text,
    department_id text NOT NULL REFERENCES departments (id),
    priority      integer NOT NULL DEFAULT 100,
    UNIQUE NULLS NOT DISTINCT (category_id, town_id, department_id)
);

CREATE TABLE routing_config (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE cases (
    id                 uuid PRIMARY KEY,
    opinion_id         uuid        NOT NULL UNIQUE,
    receipt_code       text        NOT NULL,
    department_id      text        NOT NULL REFERENCES departments (id),
    station_id         text        NOT NULL,
    town_id            text        NOT NULL,
    category_id        text,
    kind               text        NOT NULL,
    state              text        NOT NULL,
    assigned_at        timestamptz NOT NULL,
    acknowledge_due_at timestamptz NOT NULL,
    complete_due_at    timestamptz NOT NULL,
    correlation_id     uuid        NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX cases_department_state ON cases (department_id, state, complete_due_at);

-- Audit trail: every transition, who, when, why.
CREATE TABLE case_transitions (
    id         bigserial PRIMARY KEY,
    case_id    uuid        NOT NULL REFERENCES cases (id),
    from_state text,
    to_state   text        NOT NULL,
    actor      text        NOT NULL,
    reason     text,
    event_id   uuid        NOT NULL,
    at         timestamptz NOT NULL
);

CREATE INDEX case_transitions_case ON case_transitions (case_id, id);
