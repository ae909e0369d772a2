-- Back to 0014: the queue is the partial index of raw.site_tracking_events_r again (built over
-- every partition; raw's processing_status, which the queue followed, says what it holds).
DROP TRIGGER site_tracking_events_r_queue_stored ON raw.site_tracking_events_r;
DROP TRIGGER site_tracking_events_r_queue_unprocessed ON raw.site_tracking_events_r;
DROP TRIGGER site_tracking_events_r_unqueue_deleted ON raw.site_tracking_events_r;
DROP TRIGGER site_tracking_events_r_identity ON raw.site_tracking_events_r;
DROP FUNCTION raw.queue_stored_events();
DROP FUNCTION raw.queue_unprocessed_event();
DROP FUNCTION raw.unqueue_deleted_events();
DROP FUNCTION raw.refuse_identity_change();
DROP FUNCTION IF EXISTS raw.queue_counts(bytea[]);  -- bound to the queue; the code of 0014 makes it again
DROP TABLE raw.event_queue;
CREATE INDEX site_tracking_events_r_pending_idx
    ON raw.site_tracking_events_r (tenant_hk, (raw_event_id + 0), processing_lane)
    WHERE processing_status <> 'PROCESSED';
