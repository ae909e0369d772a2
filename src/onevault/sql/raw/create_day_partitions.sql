-- Makes the partitions of raw.site_tracking_events_r and of staging.site_tracking_events_s (whose
-- events keep their raw event's id) for the days p_first to p_last (UTC) that do not exist yet,
-- and returns how many days it made partitions for. Each is made as a table of its own and then
-- attached, which takes a lock on the parent that lets reads and writes go on (creating it with
-- PARTITION OF would block both); its indexes are made by the attachment, at no cost on an empty
-- table. The scheduler keeps the next days made (onevault.maintenance); from psql:
-- SELECT raw.create_day_partitions(current_date, current_date + 7).
-- requires: raw/day_first_id.sql
-- requires: raw/legacy_upper.sql
-- requires: staging/legacy_upper.sql
CREATE OR REPLACE FUNCTION raw.create_day_partitions(p_first date, p_last date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_day date;
    v_made integer := 0;
    v_layer record;
    v_name text;
    v_new boolean;
BEGIN
    -- One maker at a time (several server processes run the scheduler).
    PERFORM pg_advisory_xact_lock(7073, 0);
    FOR v_day IN SELECT generate_series(p_first, p_last, interval '1 day')::date LOOP
        v_new := false;
        -- The days a legacy partition holds (migrations 0011 and 0016) have no partition of their own.
        FOR v_layer IN SELECT * FROM (VALUES ('raw', 'site_tracking_events_r', raw.legacy_upper()),
                                             ('staging', 'site_tracking_events_s', staging.legacy_upper()))
                                     AS l(schema_name, table_name, legacy_upper) LOOP
            v_name := v_layer.table_name || '_' || to_char(v_day, 'YYYYMMDD');
            CONTINUE WHEN to_regclass(format('%I.%I', v_layer.schema_name, v_name)) IS NOT NULL
                          OR raw.day_first_id(v_day) < v_layer.legacy_upper;
            EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                           'INCLUDING STORAGE INCLUDING COMPRESSION)',
                           v_layer.schema_name, v_name, v_layer.schema_name, v_layer.table_name);
            EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%s) TO (%s)',
                           v_layer.schema_name, v_layer.table_name, v_layer.schema_name, v_name,
                           raw.day_first_id(v_day), raw.day_first_id(v_day + 1));
            v_new := true;
        END LOOP;
        v_made := v_made + v_new::integer;
    END LOOP;
    RETURN v_made;
END;
$$;
