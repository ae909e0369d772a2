-- The first raw_event_id of a day (UTC): ids are (day - 2020-01-01) * 2^38 + a sequence number
-- (migration 0011), so a day's events are the ids from this one to the next day's.
CREATE OR REPLACE FUNCTION raw.day_first_id(p_day date) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (p_day - date '2020-01-01')::bigint * 274877906944;
