-- requires: util/url_decode.sql
-- One query-string parameter, decoded (string functions: a regular expression with a capture
-- group costs several times more, five times per event).
CREATE OR REPLACE FUNCTION util.query_param(p_query text, p_name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN strpos('&' || p_query, '&' || p_name || '=') > 0
                THEN util.url_decode(split_part(split_part('&' || p_query, '&' || p_name || '=', 2), '&', 1)) END;
