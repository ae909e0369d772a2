-- The partitions of raw.site_tracking_events_r whose events were all stored before p_before,
-- oldest first, each with the number of its events that still hold it back (not processed:
-- pending or failed, i.e. queued). The last day of a partition is read from its bound; that of
-- `_legacy` (the events stored before 0011) is that of its latest event. The scheduler detaches
-- and drops those that nothing holds back (onevault.maintenance).
-- requires: raw/event_day.sql
-- requires: raw/partition_upper.sql
CREATE OR REPLACE FUNCTION raw.expired_partitions(p_before date)
RETURNS TABLE (partition_name regclass, last_day date, holding bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_part record;
    v_lower bigint;  -- the previous partition's upper bound: partitions follow each other
BEGIN
    FOR v_part IN
        SELECT c.oid::regclass AS part, c.relname, raw.partition_upper(c.oid) AS upper_id
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'raw.site_tracking_events_r'::regclass
        ORDER BY 3
    LOOP
        IF v_part.relname = 'site_tracking_events_r_legacy' THEN
            SELECT coalesce((max(r.received_timestamp) AT TIME ZONE 'UTC')::date, date '2020-01-01') INTO last_day
            FROM raw.site_tracking_events_r_legacy r;
        ELSE
            last_day := raw.event_day(v_part.upper_id - 1);
        END IF;
        IF last_day IS NOT NULL AND last_day < p_before THEN
            SELECT count(*) INTO holding FROM raw.event_queue q
            WHERE q.raw_event_id < v_part.upper_id AND (v_lower IS NULL OR q.raw_event_id >= v_lower);
            partition_name := v_part.part;
            RETURN NEXT;
        END IF;
        v_lower := v_part.upper_id;
    END LOOP;
END;
$$;
