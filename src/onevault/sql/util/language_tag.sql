-- A language tag as browsers send it (navigator.language: en-US, pt_br, zh-hant-tw) in BCP 47's
-- usual case: language lower-case, 4-letter script title-case, 2-letter region upper-case; NULL
-- when it is not a language tag (at most 35 characters, subtags of letters and digits).
CREATE OR REPLACE FUNCTION util.language_tag(p_value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN length(p_value) <= 35
                     AND replace(btrim(p_value), '_', '-') ~* '^[a-z]{2,3}(-[a-z0-9]{1,8})*$'
                THEN (SELECT string_agg(CASE WHEN n = 1 THEN lower(t)
                                             WHEN t ~* '^[a-z]{2}$' THEN upper(t)
                                             WHEN t ~* '^[a-z]{4}$' THEN initcap(t)
                                             ELSE lower(t) END, '-' ORDER BY n)
                      FROM unnest(string_to_array(replace(btrim(p_value), '_', '-'), '-'))
                           WITH ORDINALITY AS s(t, n))
           END;
