-- Forgets up to p_limit idempotency keys of events stored before p_before (the idempotency
-- window, ONEVAULT_IDEMPOTENCY_DAYS): an event_id sent again after that is stored as a new event.
-- Returns how many it deleted; the scheduler calls it until that is less than p_limit.
CREATE OR REPLACE FUNCTION raw.expire_event_keys(p_before date, p_limit integer DEFAULT 50000) RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM raw.event_key k
        WHERE (k.tenant_hk, k.event_id) IN (SELECT x.tenant_hk, x.event_id FROM raw.event_key x
                                            WHERE x.stored_on < p_before LIMIT p_limit)
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone;
$$;
