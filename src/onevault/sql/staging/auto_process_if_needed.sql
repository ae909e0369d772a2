-- layer: automation
-- One bounded batch for each tenant that has due events; the message says when there was none.
-- p_lanes, p_wait and p_refresh_marts as in staging.process_batch (the service passes them to run
-- lanes in parallel, and to leave the marts to background processing in a request's run).
CREATE OR REPLACE FUNCTION staging.auto_process_if_needed(
    p_customer_id text DEFAULT NULL, p_batch_size integer DEFAULT 1000, p_lanes smallint[] DEFAULT NULL,
    p_wait boolean DEFAULT false, p_refresh_marts boolean DEFAULT true
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant record;
    v_batch jsonb;
    v_claimed integer := 0;
    v_staged integer := 0;
    v_loaded integer := 0;
    v_quarantined integer := 0;
    v_errors integer := 0;
    v_latencies jsonb := '[]';
BEGIN
    FOR v_tenant IN
        SELECT t.tenant_hk FROM staging.resolve_tenants(p_customer_id) t
        CROSS JOIN LATERAL ((SELECT 1 FROM raw.event_queue q
                             WHERE q.tenant_hk = t.tenant_hk
                               AND (q.processing_status = 'PENDING' OR q.next_attempt_at <= now())
                             LIMIT 1)
                            UNION ALL
                            -- or sessions waiting for the marts (a batch with nothing due refreshes them)
                            (SELECT 1 FROM mart.session_queue p WHERE p.tenant_hk = t.tenant_hk LIMIT 1)
                            LIMIT 1) due
    LOOP
        v_batch := staging.process_batch(v_tenant.tenant_hk, p_batch_size, p_lanes, p_wait, p_refresh_marts);
        v_claimed := v_claimed + (v_batch ->> 'claimed')::integer;
        v_staged := v_staged + (v_batch ->> 'staged')::integer;
        v_loaded := v_loaded + (v_batch ->> 'loaded')::integer;
        v_quarantined := v_quarantined + (v_batch ->> 'quarantined')::integer;
        v_errors := v_errors + (v_batch ->> 'errors')::integer;
        v_latencies := v_latencies || (v_batch -> 'latencies_ms');
    END LOOP;
    IF v_claimed = 0 THEN
        RETURN jsonb_build_object('success', true, 'processed', false,
                                  'message', 'No processing needed - all events up to date');
    END IF;
    RETURN jsonb_build_object(
        'success', v_errors = 0, 'processed', true,
        'message', format('Processed %s event(s): %s to business, %s quarantined, %s failed',
                          v_claimed, v_loaded, v_quarantined, v_errors),
        'events_processed', v_claimed, 'raw_to_staging', v_staged, 'staging_to_business', v_loaded,
        'quarantined', v_quarantined, 'errors', v_errors,
        'latencies_ms', v_latencies);
END;
$$;
