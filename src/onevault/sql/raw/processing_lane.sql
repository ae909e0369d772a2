-- The lane of an event, 0 to 7, from the key its derived data hangs on: its client session id,
-- else its visitor id, else what staging derives a visitor from (IP hash and user agent), read
-- and canonicalised as staging reads them (util.canon_id). A client session's events, and the
-- events of a visitor's derived sessions, so always share a lane: runs of different lanes never
-- share a session and are processed at the same time (staging.process_batch). What runs of
-- different lanes may share — visitors and pages — the loader locks by their hub rows.
-- requires: util/canon_id.sql
CREATE OR REPLACE FUNCTION raw.processing_lane(p_payload jsonb, p_client_ip_hash bytea, p_user_agent text)
RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (hashtext(coalesce(
    util.canon_id(coalesce(p_payload ->> 'session_id', p_payload -> 'event_data' ->> 'session_id')),
    util.canon_id(coalesce(p_payload ->> 'visitor_id', p_payload -> 'event_data' ->> 'visitor_id')),
    encode(coalesce(p_client_ip_hash, '\x'::bytea), 'hex') || coalesce(p_user_agent, ''))) & 7)::smallint;
