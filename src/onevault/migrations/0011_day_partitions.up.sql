-- The raw layer partitioned by the day (UTC) events are stored, so that retention drops old days
-- as whole tables instead of deleting rows (docs/retention.md).
--
-- The partition key is raw_event_id, which now carries its day: an event stored on day D gets
-- (D - 2020-01-01) * 2^38 + n, n taken from raw.event_seq. Ids keep growing with arrival (the
-- queue's order) and stay exact in JavaScript numbers (< 2^53) until the year 2109; a lookup by
-- raw_event_id reads one partition. (raw.event_day and raw.day_first_id in sql/raw/ compute the
-- same.) Staging stays one table: the pipeline looks staged events up by visitor and session,
-- with no day to narrow them to, and each partition would add to the planning of every batch.
--
-- Idempotency moves to raw.event_key, as a unique key cannot span partitions: one row per stored
-- event_id, kept for the idempotency window (ONEVAULT_IDEMPOTENCY_DAYS) after the day it was
-- stored, which allots the event's raw_event_id.
--
-- The existing table is not copied: it becomes the partition `_legacy` of the ids it holds,
-- attached with the indexes it has. The upgrade holds the table for the time it takes to write
-- one key per stored event (docs/retention.md gives the figure); new events then go to the
-- partitions of their day, made from here on by the service's scheduler
-- (raw.create_day_partitions) a few days ahead. A legacy table that holds no event (a new
-- installation) is dropped instead.
LOCK TABLE raw.site_tracking_events_r IN ACCESS EXCLUSIVE MODE;

CREATE SEQUENCE raw.event_seq AS bigint;

-- Written as a table and then indexed: faster than inserting into an index row by row.
CREATE TABLE raw.event_key AS
SELECT r.tenant_hk, r.event_id, r.raw_event_id, (r.received_timestamp AT TIME ZONE 'UTC')::date AS stored_on
FROM raw.site_tracking_events_r r;
ALTER TABLE raw.event_key
    ALTER COLUMN tenant_hk SET NOT NULL,
    ALTER COLUMN event_id SET NOT NULL,
    ALTER COLUMN raw_event_id SET NOT NULL,
    ALTER COLUMN raw_event_id SET DEFAULT
        ((now() AT TIME ZONE 'UTC')::date - date '2020-01-01')::bigint * 274877906944
        + nextval('raw.event_seq') % 274877906944,
    ALTER COLUMN stored_on SET NOT NULL,
    ALTER COLUMN stored_on SET DEFAULT (now() AT TIME ZONE 'UTC')::date,
    ADD PRIMARY KEY (tenant_hk, event_id);
-- Keys are written in day order: a block range index finds the expired ones for almost nothing
-- (summarised by autovacuum as page ranges fill, not only by VACUUM).
CREATE INDEX event_key_stored_on_idx ON raw.event_key USING brin (stored_on) WITH (autosummarize = on);
COMMENT ON TABLE raw.event_key IS
    'Idempotency keys: the event_ids stored per tenant, each with the raw_event_id of its event, kept for the idempotency window after stored_on';

-- Views and SQL-standard functions bound to the table go; the database code makes them again
-- on the partitioned table after the migrations.
DROP VIEW IF EXISTS staging.pipeline_dashboard;
DROP FUNCTION IF EXISTS raw.queue_counts(bytea[]);

-- raw
ALTER TABLE raw.site_tracking_events_r ALTER COLUMN raw_event_id DROP IDENTITY;
ALTER TABLE raw.site_tracking_events_r DROP CONSTRAINT site_tracking_events_r_event_id_key;
ALTER TABLE raw.site_tracking_events_r RENAME TO site_tracking_events_r_legacy;
ALTER INDEX raw.site_tracking_events_r_pkey RENAME TO site_tracking_events_r_legacy_pkey;
ALTER INDEX raw.site_tracking_events_r_pending_idx RENAME TO site_tracking_events_r_legacy_pending_idx;
ALTER INDEX raw.site_tracking_events_r_tenant_received_idx RENAME TO site_tracking_events_r_legacy_tenant_received_idx;
ALTER INDEX raw.site_tracking_events_r_received_idx RENAME TO site_tracking_events_r_legacy_received_idx;

CREATE TABLE raw.site_tracking_events_r (
    LIKE raw.site_tracking_events_r_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
        INCLUDING STORAGE INCLUDING COMPRESSION
) PARTITION BY RANGE (raw_event_id);
ALTER TABLE raw.site_tracking_events_r ALTER COLUMN raw_event_id SET DEFAULT
    ((now() AT TIME ZONE 'UTC')::date - date '2020-01-01')::bigint * 274877906944
    + nextval('raw.event_seq') % 274877906944;
ALTER TABLE raw.site_tracking_events_r ADD CONSTRAINT site_tracking_events_r_pkey PRIMARY KEY (raw_event_id);
-- The queue (see 0001_baseline): per partition, so a day whose events are all processed has an
-- empty one.
CREATE INDEX site_tracking_events_r_pending_idx
    ON raw.site_tracking_events_r (tenant_hk, (raw_event_id + 0), processing_lane)
    WHERE processing_status <> 'PROCESSED';
CREATE INDEX site_tracking_events_r_tenant_received_idx ON raw.site_tracking_events_r (tenant_hk, received_timestamp);
CREATE INDEX site_tracking_events_r_received_idx ON raw.site_tracking_events_r (received_timestamp);
COMMENT ON TABLE raw.site_tracking_events_r IS
    'The landing table: one row per accepted event, as received; partitioned by the day in raw_event_id';
COMMENT ON COLUMN raw.site_tracking_events_r.raw_event_id IS
    'Arrival order; (day stored - 2020-01-01) * 2^38 + a sequence number: the partition key';
COMMENT ON COLUMN raw.site_tracking_events_r.event_id IS
    'The client''s event_id, or a UUID given at ingestion; unique per tenant within the idempotency window (raw.event_key)';

-- The legacy table becomes the partition of every id it holds: the ids below 2^38 (every id an
-- identity gave), or up to the end of the day of its largest id when the database was upgraded
-- before, rolled back (which keeps the ids) and is upgraded again; then the partitions of the
-- next days up to three days from today. Today's sequence numbers go on after the largest id's
-- (staging's too), so no id is given twice. A legacy table that never held an event is dropped.
DO $$
DECLARE
    v_today date := (now() AT TIME ZONE 'UTC')::date;
    v_max bigint := greatest((SELECT max(raw_event_id) FROM raw.site_tracking_events_r_legacy),
                             (SELECT max(raw_event_id) FROM staging.site_tracking_events_s));
    v_upper bigint;
    v_day date;
BEGIN
    IF v_max IS NULL THEN
        DROP TABLE raw.site_tracking_events_r_legacy;
        v_upper := (v_today - date '2020-01-01')::bigint * 274877906944;
    ELSE
        v_upper := greatest(274877906944, (v_max / 274877906944 + 1) * 274877906944);
        PERFORM setval('raw.event_seq', v_max % 274877906944 + 1, false);
        EXECUTE format('ALTER TABLE raw.site_tracking_events_r ATTACH PARTITION raw.site_tracking_events_r_legacy '
                       'FOR VALUES FROM (MINVALUE) TO (%s)', v_upper);
    END IF;
    FOR v_day IN SELECT generate_series(greatest(v_today, date '2020-01-01' + (v_upper / 274877906944)::integer),
                                        v_today + 3, interval '1 day')::date LOOP
        EXECUTE format('CREATE TABLE raw.%I PARTITION OF raw.site_tracking_events_r FOR VALUES FROM (%s) TO (%s)',
                       'site_tracking_events_r_' || to_char(v_day, 'YYYYMMDD'),
                       (v_day - date '2020-01-01')::bigint * 274877906944,
                       (v_day + 1 - date '2020-01-01')::bigint * 274877906944);
    END LOOP;
END;
$$;
