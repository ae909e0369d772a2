-- The raw events of the given ids, read by a statement planned for them: raw is partitioned by
-- day, and a statement that names the table in its kept (generic) plan holds every day's partition
-- in it — the plan cache, comparing its cost with the partitions of one day, then plans the
-- statement anew for every call instead (in staging.stage_events, 4–8 ms a batch with 30 days).
-- A statement that reads the events through this function keeps its plan, and this one reads
-- and locks only the days between the first and the last id.
CREATE OR REPLACE FUNCTION raw.events_by_id(p_raw_ids bigint[]) RETURNS SETOF raw.site_tracking_events_r
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
        SELECT * FROM raw.site_tracking_events_r r
        WHERE r.raw_event_id = ANY ($1) AND r.raw_event_id BETWEEN $2 AND $3
    $q$
    USING p_raw_ids, (SELECT min(i) FROM unnest(p_raw_ids) i), (SELECT max(i) FROM unnest(p_raw_ids) i);
END;
$$;
