-- layer: automation
-- Pending work per layer (the information marts: sessions loaded whose facts wait in
-- mart.session_queue), quarantine, errors, business totals and processing latency.
-- Staging is partitioned by day: its latest events are read from the last 7 days (the latency
-- over at most 1,000 of them per customer), and from every day only when a customer has none
-- there. Events wait in staging (loaded into the business layer later) only when staged before
-- 0016 (stage_events loads every valid event it stages): the legacy partition, and the last 7
-- days for any written by hand.
-- requires: raw/day_first_id.sql
-- requires: staging/legacy_upper.sql
CREATE OR REPLACE FUNCTION staging.get_pipeline_status(p_customer_id text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_tenants bytea[];
    v_result jsonb;
    v_legacy bigint := staging.legacy_upper();
    v_floor bigint := raw.day_first_id((now() AT TIME ZONE 'UTC')::date - 7);
BEGIN
    SELECT array_agg(t.tenant_hk) INTO v_tenants FROM staging.resolve_tenants(p_customer_id) t;
    v_tenants := coalesce(v_tenants, '{}');
    LOOP
        SELECT jsonb_build_object(
            'customer_id', p_customer_id,
            'raw_events_total', st.staged + q.raw_pending + q.raw_errors,
            -- The latest event is the latest staged or the latest queued (ids grow with arrival): two
            -- index probes, where raw would be read in every day partition.
            'last_received_at', (SELECT max(x.received) FROM unnest(v_tenants) AS t(tenant_hk)
                                 CROSS JOIN LATERAL (
                                     (SELECT s.received_at AS received FROM staging.site_tracking_events_s s
                                      WHERE s.tenant_hk = t.tenant_hk AND s.raw_event_id >= v_floor
                                      ORDER BY s.raw_event_id DESC LIMIT 1)
                                     UNION ALL
                                     (SELECT q.received_timestamp FROM raw.event_queue q
                                      WHERE q.tenant_hk = t.tenant_hk ORDER BY q.raw_event_id DESC LIMIT 1)) x),
            'raw_pending', q.raw_pending,
            'raw_errors', q.raw_errors,
            'staging_pending', (SELECT count(*) FROM staging.site_tracking_events_s s
                                WHERE s.tenant_hk = ANY (v_tenants) AND s.business_loaded_at IS NULL
                                  AND s.validation_status <> 'INVALID'
                                  AND (s.raw_event_id < v_legacy OR s.raw_event_id >= v_floor)),
            'marts_pending', (SELECT count(DISTINCT m.site_session_hk) FROM mart.session_queue m
                              WHERE m.tenant_hk = ANY (v_tenants)),
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
                WHERE s.tenant_hk = t.tenant_hk AND s.business_loaded_at IS NOT NULL AND s.raw_event_id >= v_floor
                ORDER BY s.raw_event_id DESC LIMIT 1000) x) l;
        EXIT WHEN v_floor = 0 OR v_result ->> 'last_received_at' IS NOT NULL;
        v_floor := 0;
    END LOOP;
    RETURN v_result;
END;
$$;
