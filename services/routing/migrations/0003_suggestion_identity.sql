-- Issue 14: a common-problem suggestion is a case of its own. It used to carry its lead
-- opinion's receipt code (one code, two cases in the worklist) and the correlation id of the
-- opinion whose arrival opened it (its events read as that opinion's story). New suggestions
-- get a code `JY-XXXXX-XXXXX` and their own id as correlation id; existing ones get a code
-- derived from their id (hex digits are in the receipt alphabet) and their id as well.
UPDATE cases
SET receipt_code = 'JY-' || upper(substr(md5(id::text), 1, 5)) || '-'
                         || upper(substr(md5(id::text), 6, 5)),
    correlation_id = id
WHERE classification = 'common' AND opinion_id IS NULL AND receipt_code NOT LIKE 'JY-%';
