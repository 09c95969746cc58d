-- The read model of each case as evaluation learns it from events. Every column may arrive
-- in any order, so each is nullable and each handler is an idempotent upsert.
CREATE TABLE case_facts (
    case_id            uuid PRIMARY KEY,
    opinion_id         uuid,
    department_id      text,
    station_id         text,
    town_id            text,
    category_id        text,
    kind               text,
    assigned_at        timestamptz,
    acknowledge_due_at timestamptz,
    complete_due_at    timestamptz,
    first_notified_at  timestamptz,
    notifications_sent integer NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX case_facts_department_month ON case_facts (department_id, assigned_at);
