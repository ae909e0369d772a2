-- The staged events of the given raw ids, read by a statement planned for them (as
-- raw.events_by_id does for raw): staging is partitioned by day, and staging.load_business's
-- statement, naming the table, was planned anew for every batch (~24 ms of 140 with 30 days kept).
CREATE OR REPLACE FUNCTION staging.events_by_id(p_raw_ids bigint[]) RETURNS SETOF staging.site_tracking_events_s
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
        SELECT * FROM staging.site_tracking_events_s s
        WHERE s.raw_event_id = ANY ($1) AND s.raw_event_id BETWEEN $2 AND $3
    $q$
    USING p_raw_ids, (SELECT min(i) FROM unnest(p_raw_ids) i), (SELECT max(i) FROM unnest(p_raw_ids) i);
END;
$$;
