-- Issue #14: the deputies and their stations (from the reference data, loaded by `seed`), so
-- that a report-back session (述职评议) names a known deputy of its station.
CREATE TABLE deputies (
    deputy_id  text PRIMARY KEY,
    station_id text NOT NULL
);
