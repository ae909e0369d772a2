-- Puts failed (ERROR) and quarantined (INVALID) events of a tenant (NULL: all) back in the queue.
CREATE OR REPLACE FUNCTION staging.requeue_failed(p_tenant_hk bytea DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_quarantined integer;
    v_failed integer;
BEGIN
    WITH q AS (
        DELETE FROM staging.site_tracking_events_s s
        WHERE s.validation_status = 'INVALID' AND (p_tenant_hk IS NULL OR s.tenant_hk = p_tenant_hk)
        RETURNING s.raw_event_id, s.tenant_hk, (s.load_date AT TIME ZONE 'UTC')::date AS day
    ), r AS (
        UPDATE raw.site_tracking_events_r r
        SET processing_status = 'PENDING', processed_at = NULL
        FROM q WHERE r.raw_event_id = q.raw_event_id
        RETURNING 1
    ), uncount AS (
        UPDATE staging.pipeline_stats t
        SET staged = t.staged - c.n, quarantined = t.quarantined - c.n
        FROM (SELECT tenant_hk, day, count(*) AS n FROM q GROUP BY tenant_hk, day) c
        WHERE t.tenant_hk = c.tenant_hk AND t.day = c.day
    )
    SELECT count(*) INTO v_quarantined FROM r;

    -- Failed events are found in the queue, whose entries are locked first: a run retrying one of
    -- them holds its entry, and this waits for it rather than deadlock over its raw row.
    WITH failed AS (
        SELECT q.raw_event_id FROM raw.event_queue q
        WHERE q.processing_status = 'ERROR' AND (p_tenant_hk IS NULL OR q.tenant_hk = p_tenant_hk)
        FOR UPDATE
    )
    UPDATE raw.site_tracking_events_r r
    SET processing_status = 'PENDING', retry_count = 0, next_attempt_at = NULL
    FROM failed f
    WHERE r.raw_event_id = f.raw_event_id AND r.processing_status = 'ERROR';
    GET DIAGNOSTICS v_failed = ROW_COUNT;

    RETURN jsonb_build_object('requeued_quarantined', v_quarantined, 'requeued_errors', v_failed);
END;
$$;
