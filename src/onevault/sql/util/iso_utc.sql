-- A point in time as canonical text: UTC ISO 8601 with microseconds, whatever the session's
-- TimeZone or DateStyle.
CREATE OR REPLACE FUNCTION util.iso_utc(p_time timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN to_char(p_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
