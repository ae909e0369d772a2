-- A field of a raw event's payload: read at the top level first, then inside event_data; NULL
-- when absent or JSON null. (staging.stage_events reads every known field this way.)
CREATE OR REPLACE FUNCTION staging.payload_value(p_payload jsonb, p_key text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(nullif(p_payload -> p_key, 'null'), nullif(p_payload -> 'event_data' -> p_key, 'null'));
