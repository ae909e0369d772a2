-- Deletes up to p_limit staged events stored before p_before (staging's retention,
-- ONEVAULT_RETENTION_STAGING_DAYS) that are done with: loaded into the business layer, or
-- quarantined. Returns how many; the scheduler calls it until that is less than p_limit. Staged
-- events are found by their raw_event_id, which carries the day they were stored (raw.event_day);
-- those stored before the raw layer was partitioned (below raw.legacy_upper) by received_at.
-- requires: raw/day_first_id.sql
-- requires: raw/legacy_upper.sql
CREATE OR REPLACE FUNCTION staging.expire_events(p_before date, p_limit integer DEFAULT 10000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_legacy bigint := raw.legacy_upper();
    v_gone integer;
BEGIN
    DELETE FROM staging.site_tracking_events_s s
    WHERE s.raw_event_id IN (
        SELECT x.raw_event_id FROM staging.site_tracking_events_s x
        WHERE x.raw_event_id < greatest(raw.day_first_id(p_before), v_legacy)
          AND (x.raw_event_id >= v_legacy OR x.received_at < p_before::timestamp AT TIME ZONE 'UTC')
          AND (x.business_loaded_at IS NOT NULL OR x.validation_status = 'INVALID')
        ORDER BY x.raw_event_id
        LIMIT p_limit);
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    RETURN v_gone;
END;
$$;
