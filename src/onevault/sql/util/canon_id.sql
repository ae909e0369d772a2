-- A client's identifier (visitor or session id) as a business key: trimmed of white space,
-- compared without case (lower case), NULL when nothing is left.
CREATE OR REPLACE FUNCTION util.canon_id(p_value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN nullif(lower(btrim(p_value, E' \t\r\n\f\v')), '');
