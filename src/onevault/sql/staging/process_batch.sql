-- Claims up to p_limit due events of one tenant, oldest first, from the lanes (all by default)
-- no other run holds, and processes them in the caller's transaction. Runs of different lanes
-- proceed in parallel (they share no session: see raw.processing_lane); with p_wait a run waits
-- for its lanes instead of skipping busy ones. A batch that fails is retried event by event, so
-- one bad event is marked ERROR (retried later with backoff) without holding back the others.
-- With p_refresh_marts false the information marts are left to the caller or to the next run that
-- refreshes them: the service refreshes them after the batch's commit, in a transaction of its own
-- (staging.refresh_marts_if_due), and the run of one POST /api/v1/track request leaves them to
-- background processing (it answers once its event is in the vault).
-- requires: staging/refresh_marts_if_due.sql
-- requires: staging/events_by_id.sql
CREATE OR REPLACE FUNCTION staging.process_batch(
    p_tenant_hk bytea, p_limit integer DEFAULT 1000, p_lanes smallint[] DEFAULT NULL, p_wait boolean DEFAULT false,
    p_refresh_marts boolean DEFAULT true
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_lane smallint;
    v_lanes smallint[] := '{}';
    v_ids bigint[];
    v_done bigint[];
    v_id bigint;
    v_staged integer := 0;
    v_staging record;
    v_loaded integer := 0;
    v_errors integer := 0;
    v_quarantined integer;
    v_latencies jsonb;
BEGIN
    -- Lanes are taken only when they have due events: a run that has nothing to process but the
    -- marts (background processing woken by POST /api/v1/track requests, which process their own
    -- events) holds none, so it never holds back a run that has events.
    PERFORM FROM raw.event_queue q
    WHERE q.tenant_hk = p_tenant_hk AND q.processing_lane = ANY (coalesce(p_lanes, '{0,1,2,3,4,5,6,7}'))
      AND (q.processing_status = 'PENDING' OR q.next_attempt_at <= now())
    LIMIT 1;
    IF FOUND THEN
        -- Lanes are locked in ascending order, so runs waiting for several never deadlock.
        FOR v_lane IN SELECT DISTINCT l FROM unnest(coalesce(p_lanes, '{0,1,2,3,4,5,6,7}')) AS l ORDER BY 1 LOOP
            IF p_wait THEN
                PERFORM pg_advisory_xact_lock(7071, hashtext(encode(p_tenant_hk, 'hex') || '/' || v_lane));
            ELSIF NOT pg_try_advisory_xact_lock(7071, hashtext(encode(p_tenant_hk, 'hex') || '/' || v_lane)) THEN
                CONTINUE;
            END IF;
            v_lanes := v_lanes || v_lane;
        END LOOP;
        -- The oldest due events of the locked lanes.
        SELECT array_agg(c.raw_event_id ORDER BY c.raw_event_id) INTO v_ids
        FROM (
            SELECT q.raw_event_id FROM raw.event_queue q
            WHERE q.tenant_hk = p_tenant_hk AND q.processing_lane = ANY (v_lanes)
              AND (q.processing_status = 'PENDING' OR q.next_attempt_at <= now())
            ORDER BY q.raw_event_id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) c;
    END IF;
    IF v_ids IS NULL THEN
        IF p_refresh_marts THEN
            PERFORM staging.refresh_marts_if_due(p_tenant_hk, true);
        END IF;
        RETURN jsonb_build_object('claimed', 0, 'staged', 0, 'loaded', 0, 'quarantined', 0, 'errors', 0,
                                  'latencies_ms', '[]'::jsonb);
    END IF;

    BEGIN
        v_staging := staging.stage_events(v_ids);
        v_staged := v_staging.staged;
        v_loaded := staging.load_business(v_ids, v_staging.moved, false, v_staging.derived_from);
        v_done := v_ids;
    EXCEPTION WHEN OTHERS THEN
        v_staged := 0;
        v_loaded := 0;
        v_done := '{}';
        FOREACH v_id IN ARRAY v_ids LOOP
            BEGIN
                v_staging := staging.stage_events(ARRAY[v_id]);
                v_staged := v_staged + v_staging.staged;
                v_loaded := v_loaded + staging.load_business(ARRAY[v_id], v_staging.moved, false,
                                                                v_staging.derived_from);
                v_done := v_done || v_id;
            EXCEPTION WHEN OTHERS THEN
                v_errors := v_errors + 1;
                UPDATE raw.site_tracking_events_r
                SET processing_status = 'ERROR',
                    error_message = left(SQLERRM, 1000),
                    retry_count = retry_count + 1,
                    next_attempt_at = CASE WHEN retry_count + 1 < 5
                                           THEN now() + interval '10 seconds' * power(2, retry_count) END
                WHERE raw_event_id = v_id;
            END;
        END LOOP;
    END;
    -- Failed events stay queued (raw.queue_unprocessed_event brought their entries up to date).
    DELETE FROM raw.event_queue q WHERE q.tenant_hk = p_tenant_hk AND q.raw_event_id = ANY (v_done);
    -- The batch's first and last ids (v_ids is sorted) bound the reads of it to its days: an array
    -- of ids prunes no partition in a plan kept for the next batches.
    UPDATE raw.site_tracking_events_r
    SET processing_status = 'PROCESSED', processed_at = clock_timestamp(), error_message = NULL,
        next_attempt_at = NULL
    WHERE raw_event_id = ANY (v_done) AND raw_event_id BETWEEN v_ids[1] AND v_ids[cardinality(v_ids)];

    -- The information marts of the sessions loaded, when due (a caught-up run: fewer events than
    -- it could take).
    IF p_refresh_marts THEN
        PERFORM staging.refresh_marts_if_due(p_tenant_hk, cardinality(v_ids) < p_limit);
    END IF;

    -- The batch's staged rows, read once: those it quarantined (rows staged by this transaction
    -- carry a load_date at or after its start) and the latencies of those it loaded.
    SELECT count(*) FILTER (WHERE s.validation_status = 'INVALID' AND s.load_date >= now()),
           coalesce(jsonb_agg(round(extract(epoch FROM s.business_loaded_at - s.received_at) * 1000, 1))
                        FILTER (WHERE s.business_loaded_at IS NOT NULL), '[]'::jsonb)
    INTO v_quarantined, v_latencies
    FROM staging.events_by_id(v_ids) s;
    INSERT INTO staging.pipeline_stats AS t (tenant_hk, day, staged, loaded, quarantined)
    VALUES (p_tenant_hk, (now() AT TIME ZONE 'UTC')::date, v_staged, v_loaded, v_quarantined)
    ON CONFLICT (tenant_hk, day) DO UPDATE
        SET staged = t.staged + EXCLUDED.staged, loaded = t.loaded + EXCLUDED.loaded,
            quarantined = t.quarantined + EXCLUDED.quarantined;

    RETURN jsonb_build_object(
        'claimed', cardinality(v_ids),
        'staged', v_staged,
        'loaded', v_loaded,
        'quarantined', v_quarantined,
        'errors', v_errors,
        'latencies_ms', v_latencies);
END;
$$;
