-- The hash_diff of a satellite row: SHA-256 of its attributes as one canonical string, a JSON
-- array of their text forms (a delimiter that escapes what it contains, null for NULL).
-- Callers pass timestamps through util.iso_utc, so no session setting changes the result.
CREATE OR REPLACE FUNCTION util.hash_diff(VARIADIC p_parts text[]) RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN sha256(convert_to(to_json(p_parts)::text, 'UTF8'));
