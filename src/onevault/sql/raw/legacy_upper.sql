-- The first id after the legacy partition (the events stored before migration 0011, whatever day
-- their ids say), or 0 when there is none.
-- requires: raw/partition_upper.sql
CREATE OR REPLACE FUNCTION raw.legacy_upper() RETURNS bigint
    LANGUAGE sql STABLE
    RETURN coalesce(raw.partition_upper(to_regclass('raw.site_tracking_events_r_legacy')), 0);
