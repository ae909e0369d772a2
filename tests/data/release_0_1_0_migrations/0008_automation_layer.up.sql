-- The automation layer: the named functions and the view operators and the API drive the
-- pipeline with. Rolling this migration back removes exactly them; ingestion keeps working.

-- The tenants a call is about: one customer (which must exist) or, for NULL, every tenant.
CREATE FUNCTION staging.resolve_tenants(p_customer_id text) RETURNS TABLE (tenant_hk bytea, customer_id text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_customer_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM auth.tenant_h h WHERE h.tenant_bk = p_customer_id) THEN
        RAISE EXCEPTION 'unknown customer id: %', p_customer_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT h.tenant_hk, h.tenant_bk FROM auth.tenant_h h
                 WHERE p_customer_id IS NULL OR h.tenant_bk = p_customer_id;
END;
$$;

-- One bounded batch for each tenant that has due events; the message says when there was none.
-- p_lanes and p_wait as in staging.process_batch (the service passes them to run lanes in parallel).
CREATE FUNCTION staging.auto_process_if_needed(
    p_customer_id text DEFAULT NULL, p_batch_size integer DEFAULT 1000, p_lanes smallint[] DEFAULT NULL,
    p_wait boolean DEFAULT false
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
        CROSS JOIN LATERAL (SELECT 1 FROM raw.site_tracking_events_r r
                            WHERE r.tenant_hk = t.tenant_hk AND r.processing_status <> 'PROCESSED'
                              AND (r.processing_status = 'PENDING' OR r.next_attempt_at <= now())
                            ORDER BY r.raw_event_id + 0 LIMIT 1) due  -- the pending index's order
    LOOP
        v_batch := staging.process_batch(v_tenant.tenant_hk, p_batch_size, p_lanes, p_wait);
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

-- Processes everything due now (in bounded batches, up to 100 batches per tenant per call).
CREATE FUNCTION staging.trigger_pipeline_now(p_customer_id text DEFAULT NULL) RETURNS jsonb
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
            v_batch := staging.process_batch(v_tenant.tenant_hk, 1000);
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

-- Where every event of a tenant (or of all tenants) stands.
CREATE VIEW staging.pipeline_dashboard AS
SELECT r.raw_event_id,
       t.tenant_bk AS customer_id,
       r.tenant_hk,
       r.event_id,
       r.received_timestamp AS raw_load_date,
       coalesce(r.raw_payload ->> 'event_type', r.raw_payload -> 'event_data' ->> 'event_type', 'page_view')
           AS raw_event_type,
       coalesce(s.page_url, r.raw_payload ->> 'page_url') AS page_url,
       CASE WHEN r.processing_status = 'ERROR' THEN 'ERROR'
            WHEN r.processing_status = 'PENDING' THEN 'PENDING'
            WHEN s.validation_status = 'INVALID' THEN 'INVALID'
            ELSE 'PROCESSED' END AS staging_status,
       s.validation_status,
       s.validation_reasons,
       CASE WHEN s.business_loaded_at IS NOT NULL THEN '✅ Complete Pipeline'
            WHEN s.validation_status = 'INVALID' THEN '❌ Quarantined'
            ELSE '⏳ Pending' END AS business_status,
       r.error_message,
       s.business_loaded_at,
       round(extract(epoch FROM s.business_loaded_at - r.received_timestamp) * 1000)::bigint AS processing_latency_ms
FROM raw.site_tracking_events_r r
JOIN auth.tenant_h t ON t.tenant_hk = r.tenant_hk
LEFT JOIN staging.site_tracking_events_s s ON s.raw_event_id = r.raw_event_id;

-- Pending work per layer, quarantine, errors, business totals and processing latency.
CREATE FUNCTION staging.get_pipeline_status(p_customer_id text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_tenants bytea[];
    v_result jsonb;
BEGIN
    SELECT array_agg(t.tenant_hk) INTO v_tenants FROM staging.resolve_tenants(p_customer_id) t;
    v_tenants := coalesce(v_tenants, '{}');
    SELECT jsonb_build_object(
        'customer_id', p_customer_id,
        'raw_events_total', st.staged + q.raw_pending + q.raw_errors,
        'last_received_at', (SELECT max(r.received_timestamp) FROM unnest(v_tenants) AS t(tenant_hk)
                             CROSS JOIN LATERAL (SELECT x.received_timestamp FROM raw.site_tracking_events_r x
                                                 WHERE x.tenant_hk = t.tenant_hk
                                                 ORDER BY x.received_timestamp DESC LIMIT 1) r),
        'raw_pending', q.raw_pending,
        'raw_errors', q.raw_errors,
        'staging_pending', (SELECT count(*) FROM staging.site_tracking_events_s s
                            WHERE s.tenant_hk = ANY (v_tenants) AND s.business_loaded_at IS NULL
                              AND s.validation_status <> 'INVALID'),
        'quarantined', st.quarantined,
        'business_events_total', st.loaded,
        'business_events_today', st.loaded_today,
        'last_processed_at', l.last_processed_at,
        'latency_ms_avg', l.avg_ms,
        'latency_ms_p95', l.p95_ms,
        'latency_sample_size', l.n,
        'pipeline_healthy', q.raw_errors = 0)
    INTO v_result
    FROM (SELECT c.pending AS raw_pending, c.errors AS raw_errors FROM raw.queue_counts(v_tenants) c) q
    CROSS JOIN (
        SELECT coalesce(sum(p.staged), 0) AS staged, coalesce(sum(p.quarantined), 0) AS quarantined,
               coalesce(sum(p.loaded), 0) AS loaded,
               coalesce(sum(p.loaded) FILTER (WHERE p.day = (now() AT TIME ZONE 'UTC')::date), 0) AS loaded_today
        FROM staging.pipeline_stats p WHERE p.tenant_hk = ANY (v_tenants)) st
    CROSS JOIN (
        -- latency over the most recent 1000 events of each tenant that reached the business layer
        SELECT max(x.processed_at) AS last_processed_at, count(*) AS n,
               round(avg(x.ms)::numeric, 1) AS avg_ms,
               round(percentile_cont(0.95) WITHIN GROUP (ORDER BY x.ms)::numeric, 1) AS p95_ms
        FROM unnest(v_tenants) AS t(tenant_hk)
        CROSS JOIN LATERAL (
            SELECT s.business_loaded_at AS processed_at,
                   extract(epoch FROM s.business_loaded_at - s.received_at) * 1000 AS ms
            FROM staging.site_tracking_events_s s
            WHERE s.tenant_hk = t.tenant_hk AND s.business_loaded_at IS NOT NULL
            ORDER BY s.raw_event_id DESC LIMIT 1000) x) l;
    RETURN v_result;
END;
$$;
