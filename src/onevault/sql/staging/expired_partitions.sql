-- The partitions of staging.site_tracking_events_s whose events were all stored before p_before,
-- oldest first, each with the number of its events that still hold it back (valid ones not loaded
-- into the business layer yet). The last day of a partition is read from its bound; that of
-- `_legacy` (the events staged before 0016) is that of its latest event's receipt. The scheduler
-- detaches and drops those that nothing holds back (onevault.maintenance), as it does raw's.
-- requires: raw/event_day.sql
-- requires: raw/partition_upper.sql
CREATE OR REPLACE FUNCTION staging.expired_partitions(p_before date)
RETURNS TABLE (partition_name regclass, last_day date, holding bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_part record;
BEGIN
    FOR v_part IN
        SELECT c.oid::regclass AS part, c.relname, raw.partition_upper(c.oid) AS upper_id
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'staging.site_tracking_events_s'::regclass
        ORDER BY 3
    LOOP
        IF v_part.relname = 'site_tracking_events_s_legacy' THEN
            SELECT coalesce((max(s.received_at) AT TIME ZONE 'UTC')::date, date '2020-01-01') INTO last_day
            FROM (SELECT x.received_at FROM staging.site_tracking_events_s_legacy x
                  ORDER BY x.raw_event_id DESC LIMIT 1) s;
        ELSE
            last_day := raw.event_day(v_part.upper_id - 1);
        END IF;
        IF last_day < p_before THEN
            EXECUTE format('SELECT count(*) FROM %s WHERE business_loaded_at IS NULL AND validation_status <> %L',
                           v_part.part, 'INVALID')
            INTO holding;
            partition_name := v_part.part;
            RETURN NEXT;
        END IF;
    END LOOP;
END;
$$;
