-- Percent-decoding of a URL component ('+' is a space); NULL when the bytes are not UTF-8.
-- Only a value with escapes enters the block that catches bad bytes: a block with an EXCEPTION
-- clause starts a subtransaction each time it is entered, which the common value (no '%') skips.
CREATE OR REPLACE FUNCTION util.url_decode(p_value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF strpos(p_value, '%') = 0 THEN
        RETURN replace(p_value, '+', ' ');
    END IF;
    BEGIN
        RETURN convert_from(
            (SELECT string_agg(
                        CASE WHEN m[1] ~ '^%[0-9A-Fa-f]{2}$' THEN decode(substr(m[1], 2), 'hex')
                             ELSE convert_to(m[1], 'UTF8') END,
                        ''::bytea ORDER BY n)
             FROM regexp_matches(replace(p_value, '+', ' '), '(%[0-9A-Fa-f]{2}|[^%]+|%)', 'g')
                  WITH ORDINALITY AS t(m, n)),
            'UTF8');
    EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
        RETURN NULL;
    END;
END;
$$;
