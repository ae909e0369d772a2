-- Staging: one validated, normalised and enriched row per raw event.

-- Percent-decoding of a URL component ('+' is a space); NULL when the bytes are not UTF-8.
CREATE FUNCTION util.url_decode(p_value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF strpos(p_value, '%') = 0 THEN
        RETURN replace(p_value, '+', ' ');
    END IF;
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
$$;

-- One query-string parameter, decoded (string functions: a regular expression with a capture
-- group costs several times more, five times per event).
CREATE FUNCTION util.query_param(p_query text, p_name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN strpos('&' || p_query, '&' || p_name || '=') > 0
                THEN util.url_decode(split_part(split_part('&' || p_query, '&' || p_name || '=', 2), '&', 1)) END;

-- A timestamp sent by a client: ISO 8601 text or epoch milliseconds; NULL when unreadable.
CREATE FUNCTION util.client_time(p_value jsonb) RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE jsonb_typeof(p_value)
        WHEN 'number' THEN CASE WHEN abs((p_value #>> '{}')::numeric) < 1e14
                                THEN to_timestamp((p_value #>> '{}')::numeric / 1000.0) END
        WHEN 'string' THEN CASE WHEN p_value #>> '{}' ~ '^\d{4}-\d{2}-\d{2}'
                                 AND pg_input_is_valid(p_value #>> '{}', 'timestamptz')
                                THEN (p_value #>> '{}')::timestamptz END
    END;

-- Coarse user-agent classification for agents the application has not parsed yet.
CREATE FUNCTION staging.classify_user_agent(
    p_user_agent text,
    OUT browser_family text, OUT browser_version text, OUT os_family text, OUT os_version text,
    OUT device_type text, OUT is_bot boolean
) LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT
        CASE WHEN ua ~* 'edg/' THEN 'Edge' WHEN ua ~* 'opr/' THEN 'Opera' WHEN ua ~* 'firefox/' THEN 'Firefox'
             WHEN ua ~* 'chrome/' THEN 'Chrome' WHEN ua ~* 'safari/' THEN 'Safari' ELSE 'Other' END,
        substring(ua FROM '(?:Edg|OPR|Firefox|Chrome|Version)/([0-9]+)'),
        CASE WHEN ua ~* 'android' THEN 'Android' WHEN ua ~* 'iphone|ipad|ipod' THEN 'iOS'
             WHEN ua ~* 'windows' THEN 'Windows' WHEN ua ~* 'mac os x' THEN 'Mac OS X'
             WHEN ua ~* 'linux' THEN 'Linux' ELSE 'Other' END,
        NULL::text,
        CASE WHEN bot THEN 'bot' WHEN ua ~* 'ipad|tablet' THEN 'tablet'
             WHEN ua ~* 'mobi|iphone|android' THEN 'mobile' ELSE 'desktop' END,
        bot
    FROM (SELECT coalesce(p_user_agent, '') AS ua,
                 coalesce(p_user_agent, '') ~* '(bot|crawl|spider|slurp|scrape|headless|curl/|wget|python-|java/|go-http|httpclient|phantomjs|lighthouse)'
                     AS bot) s;
END;

-- Referrer class: direct, internal, search, social or other (of lower-cased hosts). Search: a
-- search engine's name as a label followed by another (www.google.co.uk); social: the host is the
-- network's domain or under it. Compared label by label: the same tests as regular expressions
-- cost ten times more, once per event.
CREATE FUNCTION staging.referrer_class(p_referrer_host text, p_page_host text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN p_referrer_host IS NULL OR p_referrer_host = '' THEN 'direct'
        WHEN p_referrer_host = p_page_host THEN 'internal'
        WHEN trim_array(string_to_array(p_referrer_host, '.'), 1)
                 && '{google,bing,duckduckgo,yahoo,baidu,yandex,ecosia,qwant,startpage}'::text[]
             OR strpos('.' || p_referrer_host, '.search.brave.') > 0
            THEN 'search'
        WHEN split_part(p_referrer_host, '.', -2) || '.' || split_part(p_referrer_host, '.', -1)
                 = ANY ('{facebook.com,fb.com,t.co,twitter.com,x.com,linkedin.com,lnkd.in,instagram.com,reddit.com,'
                        'pinterest.com,youtube.com,tiktok.com,mastodon.social,threads.net}'::text[])
             OR '.' || p_referrer_host LIKE '%.news.ycombinator.com'
            THEN 'social'
        ELSE 'other'
    END;

-- An absolute http(s) URL split into {scheme, authority, path, query} (NULL if it is not one);
-- the two functions after it turn the parts into the normalised URL and the host. The URL is
-- checked by a regular expression without capture groups (with them PostgreSQL's regex engine
-- works out every group's bounds, several times slower) and split by string functions, each
-- computed once: PL/pgSQL here costs less than an inlined SQL expression repeating its parts.
CREATE FUNCTION util.url_parts(p_url text) RETURNS text[]
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

-- Plain SQL expressions, so the planner inlines them into the pipeline's statements.
-- Scheme and host lower-cased, path case kept, fragment dropped.
CREATE FUNCTION util.url_from_parts(p_parts text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(p_parts[1]) || '://' || lower(p_parts[2]) || coalesce(nullif(p_parts[3], ''), '/')
           || coalesce('?' || nullif(p_parts[4], ''), '');

-- The host without user info and port, lower-cased.
CREATE FUNCTION util.host_from_parts(p_parts text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(regexp_replace(p_parts[2], '^[^@]*@|:\d*$', '', 'g'));

-- User agents parsed by the application (ua-parser), shared by every tenant.
CREATE TABLE staging.user_agent_parse (
    user_agent_hk bytea PRIMARY KEY,
    browser_family text,
    browser_version text,
    os_family text,
    os_version text,
    device_type text NOT NULL CHECK (device_type IN ('desktop', 'mobile', 'tablet', 'bot')),
    is_bot boolean NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);

CREATE TABLE staging.site_tracking_events_s (
    raw_event_id bigint PRIMARY KEY,
    tenant_hk bytea NOT NULL,
    event_id text NOT NULL,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    record_source text NOT NULL,
    validation_status text NOT NULL CHECK (validation_status IN ('VALID', 'INVALID', 'SUSPICIOUS')),
    validation_reasons text[] NOT NULL DEFAULT '{}',
    quality_score numeric(3, 2) NOT NULL,
    event_type text,
    page_url text,
    page_host text,
    page_path text,
    page_query text,
    page_title text,
    utm_source text,
    utm_medium text,
    utm_campaign text,
    utm_term text,
    utm_content text,
    referrer_url text,
    referrer_host text,
    referrer_class text,
    user_agent text,
    browser_family text,
    browser_version text,
    os_family text,
    os_version text,
    device_type text,
    is_bot boolean NOT NULL DEFAULT false,
    client_ip_hash bytea,
    received_at timestamptz NOT NULL,
    occurred_at timestamptz,
    clock_skew_ms bigint,
    session_id text,
    session_derived boolean NOT NULL DEFAULT false,
    visitor_id text,
    visitor_derived boolean NOT NULL DEFAULT false,
    user_id text,
    event_properties jsonb,
    site_event_hk bytea,
    site_session_hk bytea,
    site_visitor_hk bytea,
    site_page_hk bytea,
    business_loaded_at timestamptz
);
CREATE INDEX site_tracking_events_s_tenant_idx ON staging.site_tracking_events_s (tenant_hk, raw_event_id);
CREATE INDEX site_tracking_events_s_visitor_time_idx ON staging.site_tracking_events_s (site_visitor_hk, occurred_at)
    WHERE session_derived;
CREATE INDEX site_tracking_events_s_unloaded_idx ON staging.site_tracking_events_s (tenant_hk)
    WHERE business_loaded_at IS NULL AND validation_status <> 'INVALID';
