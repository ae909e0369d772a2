-- Makes the partitions of raw.site_tracking_events_r for the days p_first to p_last (UTC) that do
-- not exist yet, and returns how many it made. Each is made as a table of its own and then
-- attached, which takes a lock on the parent that lets reads and writes go on (creating it with
-- PARTITION OF would block both); its indexes are made by the attachment, at no cost on an empty
-- table. The scheduler keeps the next days made (onevault.maintenance); from psql:
-- SELECT raw.create_day_partitions(current_date, current_date + 7).
-- requires: raw/day_first_id.sql
-- requires: raw/legacy_upper.sql
CREATE OR REPLACE FUNCTION raw.create_day_partitions(p_first date, p_last date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_day date;
    v_made integer := 0;
    v_name text;
    -- The days the legacy partition holds (migration 0011) have no partition of their own.
    v_legacy_upper bigint := raw.legacy_upper();
BEGIN
    -- One maker at a time (several server processes run the scheduler).
    PERFORM pg_advisory_xact_lock(7073, 0);
    FOR v_day IN SELECT generate_series(p_first, p_last, interval '1 day')::date LOOP
        v_name := 'site_tracking_events_r_' || to_char(v_day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('raw.%I', v_name)) IS NOT NULL OR raw.day_first_id(v_day) < v_legacy_upper;
        EXECUTE format('CREATE TABLE raw.%I (LIKE raw.site_tracking_events_r INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                       'INCLUDING STORAGE INCLUDING COMPRESSION)', v_name);
        EXECUTE format('ALTER TABLE raw.site_tracking_events_r ATTACH PARTITION raw.%I FOR VALUES FROM (%s) TO (%s)',
                       v_name, raw.day_first_id(v_day), raw.day_first_id(v_day + 1));
        v_made := v_made + 1;
    END LOOP;
    RETURN v_made;
END;
$$;
