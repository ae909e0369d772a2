-- The lane of an event, 0 to 7, from the key its sessions hang on: the visitor id the client sent,
-- else its session id, else what staging derives a visitor from (IP hash and user agent), read
-- as staging reads them. Batches of different lanes never share a visitor's derived sessions or
-- a client session, so they are processed at the same time (staging.process_batch).
CREATE OR REPLACE FUNCTION raw.processing_lane(p_payload jsonb, p_client_ip_hash bytea, p_user_agent text)
RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (hashtext(coalesce(
    p_payload ->> 'visitor_id', p_payload -> 'event_data' ->> 'visitor_id',
    p_payload ->> 'session_id', p_payload -> 'event_data' ->> 'session_id',
    encode(coalesce(p_client_ip_hash, '\x'::bytea), 'hex') || coalesce(p_user_agent, ''))) & 7)::smallint;
