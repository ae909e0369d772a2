-- Back to 0010: one plain raw table again, holding the events of every partition (copied: unlike
-- the upgrade, a rollback rewrites the table), raw_event_id an identity again that goes on after
-- the largest id, and (tenant_hk, event_id) unique again.
LOCK TABLE raw.site_tracking_events_r IN ACCESS EXCLUSIVE MODE;

CREATE TABLE raw.site_tracking_events_r_plain (
    LIKE raw.site_tracking_events_r INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION
);
ALTER TABLE raw.site_tracking_events_r_plain ALTER COLUMN raw_event_id DROP DEFAULT;
INSERT INTO raw.site_tracking_events_r_plain SELECT * FROM raw.site_tracking_events_r;

DROP TABLE raw.site_tracking_events_r;
DROP TABLE raw.event_key;
ALTER TABLE raw.site_tracking_events_r_plain RENAME TO site_tracking_events_r;

ALTER TABLE raw.site_tracking_events_r ALTER COLUMN raw_event_id ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval(pg_get_serial_sequence('raw.site_tracking_events_r', 'raw_event_id'),
              coalesce((SELECT max(raw_event_id) FROM raw.site_tracking_events_r), 0) + 1, false);
DROP SEQUENCE raw.event_seq;
ALTER TABLE raw.site_tracking_events_r ADD CONSTRAINT site_tracking_events_r_pkey PRIMARY KEY (raw_event_id);
-- An event_id stored twice, more than the idempotency window apart, cannot be unique again.
DO $$
BEGIN
    ALTER TABLE raw.site_tracking_events_r
        ADD CONSTRAINT site_tracking_events_r_event_id_key UNIQUE (tenant_hk, event_id);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'cannot roll back 0011: an event_id was stored more than once (more than the idempotency window apart)'
        USING DETAIL = SQLERRM,
              HINT = 'find them with: SELECT tenant_hk, event_id FROM raw.site_tracking_events_r GROUP BY 1, 2 HAVING count(*) > 1';
END;
$$;
CREATE INDEX site_tracking_events_r_pending_idx
    ON raw.site_tracking_events_r (tenant_hk, (raw_event_id + 0), processing_lane)
    WHERE processing_status <> 'PROCESSED';
CREATE INDEX site_tracking_events_r_tenant_received_idx ON raw.site_tracking_events_r (tenant_hk, received_timestamp);
CREATE INDEX site_tracking_events_r_received_idx ON raw.site_tracking_events_r (received_timestamp);
COMMENT ON COLUMN raw.site_tracking_events_r.event_id IS
    'Idempotency key per tenant: the client''s event_id, or a UUID given at ingestion';
COMMENT ON COLUMN raw.site_tracking_events_r.client_ip_hash IS
    'SHA-256 of the client IP keyed with the installation''s secret key and the salt of the day it was received (util.client_ip_key); the IP itself is never stored';

