-- Issue 14: a voter's stage only moves forward. Gathering an opinion into a common-problem
-- suggestion (a case of its own) is a note on the member's receipt, not a stage: one row per
-- suggestion and member opinion, from the suggestion's `case.triaged` (classification
-- common). A receipt shows the stages of the opinion's own case and never a suggestion's.
CREATE TABLE case_groupings (
    suggestion_case_id uuid        NOT NULL,
    opinion_id         uuid        NOT NULL,
    grouped_at         timestamptz NOT NULL,
    PRIMARY KEY (suggestion_case_id, opinion_id)
);
CREATE INDEX case_groupings_opinion ON case_groupings (opinion_id);

-- Groupings recorded before this migration were kept as `triaged` stages of the suggestion.
INSERT INTO case_groupings (suggestion_case_id, opinion_id, grouped_at)
SELECT s.case_id, o.opinion_id, min(s.at)
FROM case_stages s
JOIN case_opinions o ON o.case_id = s.case_id
WHERE s.stage = 'triaged' AND s.detail ->> 'classification' = 'common'
GROUP BY s.case_id, o.opinion_id
ON CONFLICT DO NOTHING;
