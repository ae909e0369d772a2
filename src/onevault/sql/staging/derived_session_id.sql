-- The id of a session the service derives: its visitor and its earliest event, in UTC with
-- milliseconds (`v-1@2026-11-01T10:00:00.000Z`): a function of the visitor's timeline alone.
CREATE OR REPLACE FUNCTION staging.derived_session_id(p_visitor_id text, p_start timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN p_visitor_id || '@' || to_char(p_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
