-- layer: automation
-- Processes everything due now (in bounded batches, up to 100 batches per tenant per call), waiting
-- for the lanes other runs hold rather than skipping their events.
CREATE OR REPLACE FUNCTION staging.trigger_pipeline_now(p_customer_id text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_tenant record;
    v_batch jsonb;
    v_round integer;
    v_claimed integer := 0;
    v_staged integer := 0;
    v_loaded integer := 0;
    v_quarantined integer := 0;
    v_errors integer := 0;
BEGIN
    FOR v_tenant IN SELECT t.tenant_hk FROM staging.resolve_tenants(p_customer_id) t LOOP
        FOR v_round IN 1..100 LOOP
            v_batch := staging.process_batch(v_tenant.tenant_hk, 1000, p_wait => true);
            EXIT WHEN (v_batch ->> 'claimed')::integer = 0;
            v_claimed := v_claimed + (v_batch ->> 'claimed')::integer;
            v_staged := v_staged + (v_batch ->> 'staged')::integer;
            v_loaded := v_loaded + (v_batch ->> 'loaded')::integer;
            v_quarantined := v_quarantined + (v_batch ->> 'quarantined')::integer;
            v_errors := v_errors + (v_batch ->> 'errors')::integer;
        END LOOP;
    END LOOP;
    RETURN jsonb_build_object(
        'triggered_at', v_started,
        'results', jsonb_build_object(
            'total_processed', v_claimed,
            'raw_to_staging_count', v_staged,
            'staging_to_business_count', v_loaded,
            'total_success_count', v_claimed - v_errors,
            'total_error_count', v_errors,
            'quarantined_count', v_quarantined,
            'processing_summary', CASE WHEN v_claimed = 0 THEN 'No processing needed - all events up to date'
                ELSE format('Processed %s event(s) in %s ms: %s to business, %s quarantined, %s failed',
                            v_claimed, round(extract(epoch FROM clock_timestamp() - v_started) * 1000),
                            v_loaded, v_quarantined, v_errors) END));
END;
$$;
