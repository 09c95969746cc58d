-- Queries over a year of case facts (bench/kpi_queries.py, 20 million cases): without these
-- both scan a large share of case_facts (seconds at that size).
--
-- The stations a town's cases name (the monthly report of a town): a loose index scan over
-- (town_id, station_id) reads one index entry per station instead of every case of the town.
CREATE INDEX case_facts_town_station ON case_facts (town_id, station_id);

-- A department's assigned / notified counts (GET /departments/{id}/summary): an index-only
-- scan of the department's entries instead of fetching each of its rows from the heap.
CREATE INDEX case_facts_department_summary
    ON case_facts (department_id) INCLUDE (assigned_at, first_notified_at);
