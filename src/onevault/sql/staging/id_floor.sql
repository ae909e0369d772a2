-- The lowest raw_event_id a staged event that happened at or after p_at can have, or 0 when any
-- can: staging is partitioned by raw_event_id, which carries the day its event was stored
-- (raw.day_first_id), so a lookup that adds `raw_event_id >= staging.id_floor(…)` as a value known
-- when it is planned reads only the days from there on.
-- A staged event that derives or belongs to a session happened at most a day after it was
-- received (later ones are INVALID), so it was stored on or after the day of p_at - 1 day; one
-- hour more allows for a clock of the service that runs ahead of the database's (received_at is
-- the service's, the day in the id the database's). Events stored before migration 0011 carry no
-- day: they are in staging's legacy partition, and a floor below its end reads them all. NULL for
-- NULL (nothing to read).
-- requires: raw/day_first_id.sql
-- requires: staging/legacy_upper.sql
CREATE OR REPLACE FUNCTION staging.id_floor(p_at timestamptz) RETURNS bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN p_at > timestamptz '2020-01-03 00:00:00+00' AND isfinite(p_at)
                     AND raw.day_first_id(((p_at - interval '1 day 1 hour') AT TIME ZONE 'UTC')::date)
                         >= staging.legacy_upper()
                THEN raw.day_first_id(((p_at - interval '1 day 1 hour') AT TIME ZONE 'UTC')::date)
                ELSE 0 END;
