-- The first raw_event_id after every id given so far: the first of tomorrow (UTC), or of the day
-- after when tomorrow is less than an hour away (ids take the day of the transaction that stores
-- them). With staging.id_floor it bounds a lookup of staged events to the days that can hold
-- them, leaving out the days ahead that the scheduler made already.
-- requires: raw/day_first_id.sql
CREATE OR REPLACE FUNCTION staging.id_ceiling() RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL SAFE
    RETURN raw.day_first_id(((clock_timestamp() + interval '1 hour') AT TIME ZONE 'UTC')::date + 1);
