-- An entry of the marts' queue may name the events a batch added to its session without moving
-- any other: the marts then add those events to the session's facts instead of reading all of
-- the session's events again (mart.refresh_facts). An entry without them asks for the whole session.
ALTER TABLE mart.session_queue ADD COLUMN site_event_hks bytea[];
COMMENT ON COLUMN mart.session_queue.site_event_hks IS
    'Events the session gained (its other events unchanged); NULL: the session is recomputed whole';
