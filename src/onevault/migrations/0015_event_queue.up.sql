-- The queue of unprocessed events becomes a table of its own, raw.event_queue: one small row per
-- raw event that is pending or failed, keyed by tenant and arrival order. Until now the queue was a
-- partial index of raw.site_tracking_events_r, i.e. one index per day partition: every claim,
-- count and "is anything due?" read every partition's index, so with the default retention (keep)
-- each pipeline run grew with the days ever stored (a year of partitions: ~3,800 locks and +5 ms
-- per run, 40 ms per status call). raw.site_tracking_events_r keeps processing_status and the
-- other columns as before (the queue follows them, see below); only the partial index goes.
--
-- The queue follows raw by triggers, so that every writer keeps it right, psql included (the
-- triggers and their functions are schema: made here, changed only by later migrations, so that
-- no event stored while the database code is being replaced goes unqueued):
--   * rows stored unprocessed (every ingestion) are queued at the end of the inserting statement;
--   * a row whose status, retry time, lane or receipt time changes while it is unprocessed (a
--     failure, a requeue by staging.requeue_failed or by hand) is queued or its entry updated;
--   * deleted rows (erasure) leave the queue;
--   * a row's raw_event_id and tenant_hk never change: an update of either is refused (moving a row
--     to another day's partition is a delete and an insert that no row trigger of UPDATE sees).
--     An event stored on another day is deleted and stored again.
-- The pipeline takes entries off itself when it has processed their events
-- (staging.process_batch); an entry left behind (an event set to PROCESSED by hand, or whose row
-- is gone) is taken off by the next run of its lane, which finds nothing left to do for it.
--
-- Stored events are held (not lost) while the queue is filled: raw is locked against writes for
-- the time it takes to copy the unprocessed entries (a backlog of 1,000,000 pending events beside
-- 1,000,000 processed ones: 2.7 s).
LOCK TABLE raw.site_tracking_events_r IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE raw.event_queue (
    tenant_hk bytea NOT NULL,
    raw_event_id bigint NOT NULL,
    received_timestamp timestamptz NOT NULL,
    processing_lane smallint NOT NULL,
    processing_status text NOT NULL DEFAULT 'PENDING' CHECK (processing_status IN ('PENDING', 'ERROR')),
    next_attempt_at timestamptz,
    PRIMARY KEY (tenant_hk, raw_event_id)
) WITH (
    -- Every event passes through: vacuum after a fixed number of taken entries, not a share of
    -- the (small) table, so that claims do not walk long runs of dead entries.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
COMMENT ON TABLE raw.event_queue IS
    'The queue: one entry per raw event not processed yet (PENDING, or ERROR: retried at next_attempt_at, or never again when it is NULL), kept by triggers on raw.site_tracking_events_r and taken off by staging.process_batch';

INSERT INTO raw.event_queue
    (tenant_hk, raw_event_id, received_timestamp, processing_lane, processing_status, next_attempt_at)
SELECT r.tenant_hk, r.raw_event_id, r.received_timestamp, r.processing_lane, r.processing_status,
       r.next_attempt_at
FROM raw.site_tracking_events_r r
WHERE r.processing_status <> 'PROCESSED';

DROP INDEX raw.site_tracking_events_r_pending_idx;

-- Rows stored unprocessed, queued once per statement (a batch of events costs one call). A stored
-- row's id is new (raw.event_seq), so its entry is too: a plain insert, ~2 µs per event cheaper
-- than one that checks for a conflict.
CREATE FUNCTION raw.queue_stored_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO raw.event_queue
        (tenant_hk, raw_event_id, received_timestamp, processing_lane, processing_status, next_attempt_at)
    SELECT n.tenant_hk, n.raw_event_id, n.received_timestamp, n.processing_lane, n.processing_status,
           n.next_attempt_at
    FROM stored n
    WHERE n.processing_status <> 'PROCESSED';
    RETURN NULL;
END;
$$;
CREATE TRIGGER site_tracking_events_r_queue_stored
    AFTER INSERT ON raw.site_tracking_events_r
    REFERENCING NEW TABLE AS stored
    FOR EACH STATEMENT EXECUTE FUNCTION raw.queue_stored_events();

-- A row turned unprocessed (failed, requeued) or changed while unprocessed: its entry made or
-- brought up to date. The pipeline's own updates to PROCESSED do not fire it.
CREATE FUNCTION raw.queue_unprocessed_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO raw.event_queue AS q
        (tenant_hk, raw_event_id, received_timestamp, processing_lane, processing_status, next_attempt_at)
    VALUES (NEW.tenant_hk, NEW.raw_event_id, NEW.received_timestamp, NEW.processing_lane, NEW.processing_status,
            NEW.next_attempt_at)
    ON CONFLICT (tenant_hk, raw_event_id) DO UPDATE
        SET received_timestamp = EXCLUDED.received_timestamp, processing_lane = EXCLUDED.processing_lane,
            processing_status = EXCLUDED.processing_status, next_attempt_at = EXCLUDED.next_attempt_at;
    RETURN NULL;
END;
$$;
CREATE TRIGGER site_tracking_events_r_queue_unprocessed
    AFTER UPDATE ON raw.site_tracking_events_r
    FOR EACH ROW
    WHEN (NEW.processing_status <> 'PROCESSED'
          AND (OLD.processing_status, OLD.next_attempt_at, OLD.processing_lane, OLD.received_timestamp)
              IS DISTINCT FROM (NEW.processing_status, NEW.next_attempt_at, NEW.processing_lane,
                                NEW.received_timestamp))
    EXECUTE FUNCTION raw.queue_unprocessed_event();

-- Deleted rows leave the queue.
CREATE FUNCTION raw.unqueue_deleted_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM raw.event_queue q
    USING deleted d
    WHERE q.tenant_hk = d.tenant_hk AND q.raw_event_id = d.raw_event_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER site_tracking_events_r_unqueue_deleted
    AFTER DELETE ON raw.site_tracking_events_r
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION raw.unqueue_deleted_events();

-- An event's id and tenant are its identity (the queue, staging and the vault hold them): never
-- updated. Fires only for updates that name either column.
CREATE FUNCTION raw.refuse_identity_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.raw_event_id, OLD.tenant_hk) IS DISTINCT FROM (NEW.raw_event_id, NEW.tenant_hk) THEN
        RAISE EXCEPTION 'the raw_event_id and tenant_hk of a stored event never change'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'delete the event and store it again (raw.event_queue follows deletions and insertions)';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER site_tracking_events_r_identity
    BEFORE UPDATE OF raw_event_id, tenant_hk ON raw.site_tracking_events_r
    FOR EACH ROW EXECUTE FUNCTION raw.refuse_identity_change();
