-- The page a URL names in the marts: its path ('/' for none), '' for no URL.
-- requires: util/url_parts.sql
CREATE OR REPLACE FUNCTION mart.page_path(p_url text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(coalesce(nullif((util.url_parts(p_url))[3], ''), CASE WHEN p_url IS NOT NULL THEN '/' END), '');
