-- The day (UTC) an event was stored, read from its raw_event_id (raw.day_first_id); the events
-- stored before the tables were partitioned (0011) all read as 2020-01-01.
CREATE OR REPLACE FUNCTION raw.event_day(p_raw_event_id bigint) RETURNS date
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN date '2020-01-01' + (p_raw_event_id / 274877906944)::integer;
