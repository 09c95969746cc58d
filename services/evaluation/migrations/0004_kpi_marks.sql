-- Issue 14: the KPIs are charged by the rules of ARCHITECTURE.md ("KPI definitions"): a
-- return to the department that made it, in the month it was made; a re-routed case on the
-- clock of its latest assignment; each department's figures for the assignments it held.
-- That needs each case's dated handling events (`marks`: assignments, acknowledgements,
-- extensions, returns, completions, reopenings, overdue marks), not only their summary.
ALTER TABLE case_facts ADD COLUMN marks jsonb NOT NULL DEFAULT '[]'::jsonb;

-- Cases folded before this migration: their marks rebuilt from the summary columns, as far
-- as those tell — one assignment (to the department that holds the case now, on the due
-- dates kept); a return by the department that holds the case when no later event named
-- another one (else by no known department: it counts for the case's city, station, town and
-- category, not for a department). The counters are then rebuilt from the facts by
-- `migrate` itself (see the end of this file; `recount-kpis` does the same on demand).
UPDATE case_facts f SET marks = coalesce((
    SELECT jsonb_agg(m ORDER BY m ->> 'at', m ->> 'kind')
    FROM (
        SELECT jsonb_build_object('kind', 'assigned', 'at', f.assigned_at,
                   'department_id', f.department_id, 'due_at', f.complete_due_at,
                   'acknowledge_due_at', f.acknowledge_due_at)
        WHERE f.assigned_at IS NOT NULL
        UNION ALL
        SELECT jsonb_build_object('kind', 'acknowledged', 'at', f.acknowledged_at,
                   'department_id', f.department_id, 'on_time', f.acknowledged_on_time)
        WHERE f.acknowledged_at IS NOT NULL
        UNION ALL
        SELECT jsonb_build_object('kind', 'extended', 'at', f.extension_decided_at,
                   'department_id', f.department_id, 'due_at', f.extended_due_at)
        WHERE f.extension_granted AND f.extension_decided_at IS NOT NULL
        UNION ALL
        SELECT jsonb_build_object('kind', 'returned',
                   'at', f.last_returned_at - make_interval(secs => n / 1000000.0),
                   'department_id', CASE WHEN f.dims_at = f.last_returned_at
                                         THEN f.department_id ELSE '' END)
        FROM generate_series(0, greatest(f.returns, 0) - 1) AS n
        WHERE f.last_returned_at IS NOT NULL
        UNION ALL
        SELECT jsonb_build_object('kind', 'completed', 'at', f.first_completed_at,
                   'department_id', f.department_id,
                   'on_time', f.first_completed_at = f.last_completed_at
                              AND f.last_completed_on_time)
        WHERE f.first_completed_at IS NOT NULL
        UNION ALL
        SELECT jsonb_build_object('kind', 'completed', 'at', f.last_completed_at,
                   'department_id', f.department_id, 'on_time', f.last_completed_on_time)
        WHERE f.last_completed_at IS NOT NULL
          AND f.last_completed_at IS DISTINCT FROM f.first_completed_at
        UNION ALL
        SELECT jsonb_build_object('kind', 'reopened', 'at', f.last_reopened_at,
                   'department_id', f.department_id)
        WHERE f.last_reopened_at IS NOT NULL
        UNION ALL
        SELECT jsonb_build_object('kind', 'overdue_acknowledge',
                   'at', coalesce(f.acknowledge_due_at, f.assigned_at),
                   'department_id', f.department_id)
        WHERE f.overdue_acknowledge AND f.assigned_at IS NOT NULL
        UNION ALL
        SELECT jsonb_build_object('kind', 'overdue_complete',
                   'at', coalesce(f.extended_due_at, f.complete_due_at, f.assigned_at),
                   'department_id', f.department_id)
        WHERE f.overdue_complete AND f.assigned_at IS NOT NULL
    ) AS built (m)
), '[]'::jsonb)
WHERE f.marks = '[]'::jsonb;

-- The counters must then be rebuilt from these facts by the new rules: `migrate` does it
-- right after this migration (and whenever this row is still there, e.g. after a crash in
-- between), in the transaction that deletes the row.
CREATE TABLE kpi_recount_pending (
    pending boolean PRIMARY KEY DEFAULT true CHECK (pending),
    requested_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO kpi_recount_pending DEFAULT VALUES;
