-- Refreshes the marts of a customer's sessions waiting in mart.session_queue (staging.load_business
-- records them), all of them or the first p_limit, adding the events a session gained where it
-- only gained some (mart.refresh_facts); returns how many. Entries recorded by runs not yet
-- committed stay for the next call. The caller owns the transaction.
-- requires: mart/refresh_facts.sql
CREATE OR REPLACE FUNCTION mart.refresh_queued(p_tenant_hk bytea, p_limit integer DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_sessions bytea[];
BEGIN
    -- The mart lock first: a run refreshing them meanwhile commits before these are read.
    PERFORM pg_advisory_xact_lock(7072, hashtext(encode(p_tenant_hk, 'hex')));
    -- mart.refresh_facts takes their entries off the queue as it reads the vault.
    SELECT array_agg(DISTINCT q.site_session_hk) INTO v_sessions
    FROM (SELECT x.site_session_hk FROM mart.session_queue x WHERE x.tenant_hk = p_tenant_hk LIMIT p_limit) q;
    PERFORM mart.refresh_facts(v_sessions, true);
    RETURN coalesce(cardinality(v_sessions), 0);
END;
$$;
