-- The normalised URL of util.url_parts' parts: a plain SQL expression, inlined by the planner.
-- Scheme and host lower-cased, path case kept, fragment dropped.
CREATE OR REPLACE FUNCTION util.url_from_parts(p_parts text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(p_parts[1]) || '://' || lower(p_parts[2]) || coalesce(nullif(p_parts[3], ''), '/')
           || coalesce('?' || nullif(p_parts[4], ''), '');
