-- Reconciliation: an attempt whose sender died during the provider call is looked up at the
-- provider before anything is resent. 'not_sent' = the provider has no such message (after the
-- grace), so the next attempt goes; 'sent' with reconciled_at = the provider had taken it.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('sent', 'retry', 'failed', 'unknown', 'not_sent'));
ALTER TABLE delivery_attempts
    ADD COLUMN lookups       integer NOT NULL DEFAULT 0,  -- failed provider queries so far
    ADD COLUMN reconciled_at timestamptz;
