-- Empties a customer's marts, the first step of `onevault mart rebuild` (mart.rebuild_visitors
-- then fills them visitor by visitor). Under the customer's mart lock, so a pipeline run refreshes
-- sessions either before (its rows go) or after (its rows count, and the rebuild's chunk later
-- replaces them with the same): the marts always sum their facts. Returns the sessions removed.
CREATE OR REPLACE FUNCTION mart.clear_tenant(p_tenant_hk bytea) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_sessions bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7072, hashtext(encode(p_tenant_hk, 'hex')));
    DELETE FROM mart.visitor_key_days m
    USING (SELECT DISTINCT f.site_visitor_hk FROM mart.session_f f WHERE f.tenant_hk = p_tenant_hk) v
    WHERE m.site_visitor_hk = v.site_visitor_hk;
    DELETE FROM mart.session_event_f WHERE tenant_hk = p_tenant_hk;
    DELETE FROM mart.session_f WHERE tenant_hk = p_tenant_hk;
    GET DIAGNOSTICS v_sessions = ROW_COUNT;
    DELETE FROM mart.traffic_hourly WHERE tenant_hk = p_tenant_hk;
    DELETE FROM mart.traffic_daily WHERE tenant_hk = p_tenant_hk;
    DELETE FROM mart.visitor_days WHERE tenant_hk = p_tenant_hk;
    RETURN v_sessions;
END;
$$;
