-- The page a URL names in the marts: its path ('/' for none), '' for no URL. The vault's URLs are
-- normalised (util.url_from_parts: scheme://host/path?query), so string functions find the path;
-- a regular expression per event would cost several times more.
CREATE OR REPLACE FUNCTION mart.page_path(p_url text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN p_url IS NULL THEN ''
        WHEN strpos(split_part(split_part(substr(p_url, strpos(p_url, '://') + 3), '?', 1), '#', 1), '/') = 0 THEN '/'
        ELSE substr(split_part(split_part(substr(p_url, strpos(p_url, '://') + 3), '?', 1), '#', 1),
                    strpos(split_part(split_part(substr(p_url, strpos(p_url, '://') + 3), '?', 1), '#', 1), '/'))
    END;
