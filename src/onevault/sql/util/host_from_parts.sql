-- The host of util.url_parts' parts, without user info and port, lower-cased (inlined by the planner).
CREATE OR REPLACE FUNCTION util.host_from_parts(p_parts text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(regexp_replace(p_parts[2], '^[^@]*@|:\d*$', '', 'g'));
