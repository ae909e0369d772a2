DROP FUNCTION raw.ingest_site_events(bytea[], text[], jsonb[], text[], inet[], timestamptz[], text[]);
DROP FUNCTION raw.queue_counts(bytea[]);
DROP FUNCTION raw.processing_lane(jsonb, bytea, text);
DROP TABLE raw.site_tracking_events_r;
