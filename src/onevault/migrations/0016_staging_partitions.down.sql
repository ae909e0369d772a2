-- Back to 0015: one plain staging table again, holding the events of every partition (copied:
-- unlike the upgrade, a rollback rewrites the table). A rollback removes the database code before
-- the migrations; the code of 0015 creates the functions with their earlier signatures.
LOCK TABLE staging.site_tracking_events_s IN ACCESS EXCLUSIVE MODE;
DROP VIEW IF EXISTS staging.pipeline_dashboard;

CREATE TABLE staging.site_tracking_events_s_plain (
    LIKE staging.site_tracking_events_s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
        INCLUDING STORAGE INCLUDING COMPRESSION
);
INSERT INTO staging.site_tracking_events_s_plain SELECT * FROM staging.site_tracking_events_s;
DROP TABLE staging.site_tracking_events_s;
ALTER TABLE staging.site_tracking_events_s_plain RENAME TO site_tracking_events_s;

ALTER TABLE staging.site_tracking_events_s ADD CONSTRAINT site_tracking_events_s_pkey PRIMARY KEY (raw_event_id);
CREATE INDEX site_tracking_events_s_tenant_idx ON staging.site_tracking_events_s (tenant_hk, raw_event_id);
CREATE INDEX site_tracking_events_s_visitor_time_idx ON staging.site_tracking_events_s (site_visitor_hk, occurred_at)
    WHERE session_derived;
CREATE INDEX site_tracking_events_s_unloaded_idx ON staging.site_tracking_events_s (tenant_hk)
    WHERE business_loaded_at IS NULL AND validation_status <> 'INVALID';
CREATE INDEX site_tracking_events_s_session_idx ON staging.site_tracking_events_s (site_session_hk);
CREATE INDEX site_tracking_events_s_user_idx ON staging.site_tracking_events_s (tenant_hk, user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX site_tracking_events_s_invalid_visitor_idx ON staging.site_tracking_events_s (tenant_hk, site_visitor_hk)
    WHERE validation_status = 'INVALID';
COMMENT ON TABLE staging.site_tracking_events_s IS NULL;
