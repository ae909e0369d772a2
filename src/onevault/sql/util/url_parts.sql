-- An absolute http(s) URL split into {scheme, authority, path, query} (NULL if it is not one);
-- util.url_from_parts and util.host_from_parts turn the parts into the normalised URL and the host. The URL is
-- checked by a regular expression without capture groups (with them PostgreSQL's regex engine
-- works out every group's bounds, several times slower) and split by string functions, each
-- computed once: PL/pgSQL here costs less than an inlined SQL expression repeating its parts.
CREATE OR REPLACE FUNCTION util.url_parts(p_url text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    v_url text := btrim(p_url);
    v_after text;  -- what follows "scheme://"
    v_authority text;
    v_rest text;  -- path and query, without the fragment
BEGIN
    IF v_url !~* '^https?://[^/?#\s]+[^?#\s]*(\?[^#]*)?(#.*)?$' THEN
        RETURN NULL;
    END IF;
    v_after := substr(v_url, strpos(v_url, '://') + 3);
    v_authority := split_part(split_part(split_part(v_after, '/', 1), '?', 1), '#', 1);
    v_rest := split_part(substr(v_after, length(v_authority) + 1), '#', 1);
    RETURN ARRAY[split_part(v_url, ':', 1), v_authority, split_part(v_rest, '?', 1),
                 CASE WHEN strpos(v_rest, '?') > 0 THEN substr(v_rest, strpos(v_rest, '?') + 1) END];
END;
$$;
