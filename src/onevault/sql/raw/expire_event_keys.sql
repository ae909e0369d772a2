-- Forgets the idempotency keys of events stored before p_before (the idempotency window,
-- ONEVAULT_IDEMPOTENCY_DAYS): an event_id sent again after that is stored as a new event. One
-- statement: the block range index on stored_on (summarised as pages fill) leads it to the old
-- keys' pages, where chunks with a LIMIT would each read the table again. A copy of an event sent
-- while its key is being deleted waits for the deletion, then is stored as new. Returns how many.
CREATE OR REPLACE FUNCTION raw.expire_event_keys(p_before date) RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM raw.event_key k WHERE k.stored_on < p_before RETURNING 1)
    SELECT count(*) FROM gone;
$$;
