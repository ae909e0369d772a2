-- Staging partitioned by day like raw (0011), so that its retention drops old days as whole
-- tables instead of deleting rows (docs/retention.md). A staged event keeps the raw_event_id of
-- its raw event, so its partition is that of its raw event's day: staging has a partition for
-- every raw partition (raw.create_day_partitions makes both).
--
-- The pipeline's lookups of staged events by visitor and by session read from a floor of
-- raw_event_id known when they are planned (staging.id_floor), so a batch plans and reads only
-- the days its events and sessions reach, not every day kept: staging.stage_events also returns
-- that time and staging.load_business / load_sessions take it (their code is in sql/staging/).
-- Their earlier signatures go, so that no call is ambiguous.
--
-- The existing table is not copied: it becomes the partition `_legacy` of the ids it holds, of
-- raw's legacy ids (whose events may still be staged) and of the ids of today: up to the end of
-- today or of the day of its largest id. Ids given before 0011 carry no day, but their events
-- were received before now, so a lookup whose floor is past today's (staging.id_floor) needs none
-- of them; it is attached with the indexes it has. The upgrade holds the table for the time it takes to
-- check it against that bound. A legacy table that holds nothing and has no raw legacy ids to
-- take is dropped instead.
DROP FUNCTION IF EXISTS staging.stage_events(bigint[]);
DROP FUNCTION IF EXISTS staging.load_business(bigint[], bigint[], boolean);
DROP FUNCTION IF EXISTS staging.load_sessions(bigint[], bigint[], boolean, timestamptz);
DROP FUNCTION IF EXISTS staging.expire_events(date, integer);

LOCK TABLE staging.site_tracking_events_s IN ACCESS EXCLUSIVE MODE;
-- Views bound to the table go; the database code makes them again on the partitioned table.
DROP VIEW IF EXISTS staging.pipeline_dashboard;

ALTER TABLE staging.site_tracking_events_s RENAME TO site_tracking_events_s_legacy;
ALTER INDEX staging.site_tracking_events_s_pkey RENAME TO site_tracking_events_s_legacy_pkey;
ALTER INDEX staging.site_tracking_events_s_tenant_idx RENAME TO site_tracking_events_s_legacy_tenant_idx;
ALTER INDEX staging.site_tracking_events_s_visitor_time_idx RENAME TO site_tracking_events_s_legacy_visitor_time_idx;
ALTER INDEX staging.site_tracking_events_s_unloaded_idx RENAME TO site_tracking_events_s_legacy_unloaded_idx;
ALTER INDEX staging.site_tracking_events_s_session_idx RENAME TO site_tracking_events_s_legacy_session_idx;
ALTER INDEX staging.site_tracking_events_s_user_idx RENAME TO site_tracking_events_s_legacy_user_idx;
ALTER INDEX staging.site_tracking_events_s_invalid_visitor_idx
    RENAME TO site_tracking_events_s_legacy_invalid_visitor_idx;

CREATE TABLE staging.site_tracking_events_s (
    LIKE staging.site_tracking_events_s_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
        INCLUDING STORAGE INCLUDING COMPRESSION
) PARTITION BY RANGE (raw_event_id);
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
COMMENT ON TABLE staging.site_tracking_events_s IS
    'Validated, normalised and enriched events, one per raw event; partitioned like raw by the day in raw_event_id';

DO $$
DECLARE
    v_max bigint := (SELECT max(raw_event_id) FROM staging.site_tracking_events_s_legacy);
    v_raw_legacy bigint := coalesce(
        (SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''?([0-9]+)''?\)'))[1]::bigint
         FROM pg_class c WHERE c.oid = to_regclass('raw.site_tracking_events_r_legacy')), 0);
    v_upper bigint := 0;
    v_part record;
BEGIN
    IF v_max IS NULL AND v_raw_legacy = 0 THEN
        DROP TABLE staging.site_tracking_events_s_legacy;
    ELSE
        v_upper := greatest(v_raw_legacy, (coalesce(v_max, 0) / 274877906944 + 1) * 274877906944,
                            ((now() AT TIME ZONE 'UTC')::date + 1 - date '2020-01-01')::bigint * 274877906944);
        EXECUTE format('ALTER TABLE staging.site_tracking_events_s ATTACH PARTITION staging.site_tracking_events_s_legacy '
                       'FOR VALUES FROM (MINVALUE) TO (%s)', v_upper);
    END IF;
    -- Raw's day partitions from there on, each with a staging partition of the same bounds.
    FOR v_part IN
        SELECT c.relname, b[1]::bigint AS lower_id, b[2]::bigint AS upper_id
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                        'FROM \(''?([0-9]+)''?\) TO \(''?([0-9]+)''?\)') b
        WHERE i.inhparent = 'raw.site_tracking_events_r'::regclass AND b[1]::bigint >= v_upper
    LOOP
        EXECUTE format('CREATE TABLE staging.%I PARTITION OF staging.site_tracking_events_s FOR VALUES FROM (%s) TO (%s)',
                       replace(v_part.relname, 'site_tracking_events_r_', 'site_tracking_events_s_'),
                       v_part.lower_id, v_part.upper_id);
    END LOOP;
END;
$$;
