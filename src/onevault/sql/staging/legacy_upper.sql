-- The first id after staging's legacy partition (the events staged before migration 0016, and
-- raw's legacy ids, whatever day their ids say), or 0 when there is none.
-- requires: raw/partition_upper.sql
CREATE OR REPLACE FUNCTION staging.legacy_upper() RETURNS bigint
    LANGUAGE sql STABLE
    RETURN coalesce(raw.partition_upper(to_regclass('staging.site_tracking_events_s_legacy')), 0);
