-- raw → staging: validate, normalise and enrich the given raw events (those not staged yet),
-- deriving visitors and 30-minute sessions where the client sent none.
-- requires: util/language_tag.sql
-- requires: util/pixels.sql
CREATE OR REPLACE FUNCTION staging.stage_events(p_raw_ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    WITH src AS (
        SELECT r.raw_event_id, r.tenant_hk, r.event_id, r.record_source, r.received_timestamp AS received_at,
               r.user_agent, r.client_ip_hash, r.raw_payload AS p,
               CASE WHEN jsonb_typeof(r.raw_payload -> 'event_data') = 'object'
                    THEN r.raw_payload -> 'event_data' ELSE '{}'::jsonb END AS d,
               r.raw_payload ? 'event_data' AND r.raw_payload -> 'event_data' <> 'null'::jsonb
                   AND jsonb_typeof(r.raw_payload -> 'event_data') <> 'object' AS bad_event_data
        FROM raw.site_tracking_events_r r
        WHERE r.raw_event_id = ANY (p_raw_ids)
    ), fields AS MATERIALIZED (
        -- Known keys are read at the top level first, then inside event_data. Materialised (like
        -- the next step) so that each parse runs once per event, not once per use.
        SELECT src.*,
               coalesce(p ->> 'event_type', d ->> 'event_type', 'page_view') AS event_type,
               coalesce(p ->> 'page_url', d ->> 'page_url') AS page_url_in,
               coalesce(p ->> 'referrer', d ->> 'referrer') AS referrer_in,
               coalesce(p ->> 'page_title', d ->> 'page_title') AS page_title,
               coalesce(nullif(p -> 'timestamp', 'null'), nullif(d -> 'timestamp', 'null')) AS ts_in,
               coalesce(nullif(p -> 'sent_at', 'null'), nullif(d -> 'sent_at', 'null')) AS sent_in,
               coalesce(p ->> 'session_id', d ->> 'session_id') AS session_in,
               coalesce(p ->> 'visitor_id', d ->> 'visitor_id') AS visitor_in,
               coalesce(p ->> 'user_id', d ->> 'user_id') AS user_id,
               util.language_tag(coalesce(p ->> 'language', d ->> 'language')) AS language,
               util.pixels(coalesce(nullif(p -> 'screen_width', 'null'), d -> 'screen_width')) AS screen_width,
               util.pixels(coalesce(nullif(p -> 'screen_height', 'null'), d -> 'screen_height')) AS screen_height,
               util.pixels(coalesce(nullif(p -> 'viewport_width', 'null'), d -> 'viewport_width')) AS viewport_width,
               util.pixels(coalesce(nullif(p -> 'viewport_height', 'null'), d -> 'viewport_height')) AS viewport_height
        FROM src
    ), parsed AS MATERIALIZED (
        SELECT f.*, util.url_parts(f.page_url_in) AS page_parts, util.url_parts(f.referrer_in) AS referrer_parts,
               util.client_time(f.ts_in) AS ts, util.client_time(f.sent_in) AS sent
        FROM fields f
    ), enriched AS MATERIALIZED (
        SELECT f.*,
               util.url_from_parts(f.page_parts) AS page_url, util.host_from_parts(f.page_parts) AS page_host,
               coalesce(nullif(f.page_parts[3], ''), '/') AS page_path, nullif(f.page_parts[4], '') AS page_query,
               util.url_from_parts(f.referrer_parts) AS referrer_url,
               util.host_from_parts(f.referrer_parts) AS referrer_host,
               coalesce(ua.browser_family, fb.browser_family) AS browser_family,
               coalesce(ua.browser_version, fb.browser_version) AS browser_version,
               coalesce(ua.os_family, fb.os_family) AS os_family,
               coalesce(ua.os_version, fb.os_version) AS os_version,
               coalesce(ua.device_type, fb.device_type) AS device_type,
               coalesce(ua.is_bot, fb.is_bot, false) AS is_bot,
               CASE WHEN f.ts IS NULL THEN f.received_at
                    WHEN f.sent IS NOT NULL THEN f.received_at - (f.sent - f.ts)
                    ELSE f.ts END AS occurred_at,
               CASE WHEN f.sent IS NOT NULL
                    THEN (extract(epoch FROM (f.sent - f.received_at)) * 1000)::bigint END AS clock_skew_ms,
               coalesce(f.visitor_in, 'anon-' || left(encode(sha256(
                   f.tenant_hk || coalesce(f.client_ip_hash, '\x'::bytea)
                   || convert_to(coalesce(f.user_agent, ''), 'UTF8')), 'hex'), 32)) AS visitor_id
        FROM parsed f
        LEFT JOIN staging.user_agent_parse ua
               ON ua.user_agent_hk = sha256(convert_to(f.user_agent, 'UTF8'))
        LEFT JOIN LATERAL (SELECT * FROM staging.classify_user_agent(f.user_agent) c
                           WHERE ua.user_agent_hk IS NULL OFFSET 0) fb ON true
    ), checked AS MATERIALIZED (
        SELECT e.*,
               array_remove(ARRAY[
                   CASE WHEN e.page_url_in IS NOT NULL AND e.page_url IS NULL
                        THEN 'page_url is not an absolute http(s) URL' END,
                   CASE WHEN e.event_type !~ '^[A-Za-z0-9_.:-]+$' OR length(e.event_type) > 64
                        THEN 'invalid event_type' END,
                   CASE WHEN e.bad_event_data THEN 'event_data is not an object' END,
                   CASE WHEN e.ts_in IS NOT NULL AND e.ts IS NULL
                        THEN 'timestamp is neither ISO 8601 nor epoch milliseconds' END,
                   CASE WHEN e.sent_in IS NOT NULL AND e.sent IS NULL
                        THEN 'sent_at is neither ISO 8601 nor epoch milliseconds' END,
                   CASE WHEN e.occurred_at > e.received_at + interval '1 day' THEN 'timestamp is in the future' END,
                   CASE WHEN e.occurred_at < timestamptz '2000-01-01' THEN 'timestamp is before 2000' END
               ], NULL) AS invalid_reasons,
               array_remove(ARRAY[
                   CASE WHEN e.is_bot THEN 'bot user agent' END,
                   CASE WHEN e.occurred_at < e.received_at - interval '30 days'
                         AND e.occurred_at >= timestamptz '2000-01-01'
                        THEN 'timestamp more than 30 days before receipt' END
               ], NULL) AS suspicious_reasons,
               util.hash_key(e.tenant_hk, e.visitor_id) AS site_visitor_hk
        FROM enriched e
    ), fresh AS (
        SELECT c.site_visitor_hk, c.occurred_at, c.raw_event_id, c.visitor_id
        FROM checked c
        WHERE cardinality(c.invalid_reasons) = 0 AND c.session_in IS NULL
    ), timeline AS (
        -- Sessions: the client's, else per visitor a new one after 30 minutes without events.
        -- Each new event is placed between the visitor's nearest staged events before and after
        -- it (within 30 minutes), so late events join the session they belong to and sessions
        -- continue across batches.
        SELECT f.site_visitor_hk, f.occurred_at, f.raw_event_id, f.visitor_id, NULL::text AS known_session
        FROM fresh f
        UNION
        SELECT f.site_visitor_hk, n.occurred_at, NULL, NULL, n.session_id
        FROM fresh f
        CROSS JOIN LATERAL (
            (SELECT s.occurred_at, s.session_id FROM staging.site_tracking_events_s s
             WHERE s.site_visitor_hk = f.site_visitor_hk AND s.session_derived
               AND s.occurred_at BETWEEN f.occurred_at - interval '30 minutes' AND f.occurred_at
             ORDER BY s.occurred_at DESC LIMIT 1)
            UNION ALL
            (SELECT s.occurred_at, s.session_id FROM staging.site_tracking_events_s s
             WHERE s.site_visitor_hk = f.site_visitor_hk AND s.session_derived
               AND s.occurred_at BETWEEN f.occurred_at AND f.occurred_at + interval '30 minutes'
             ORDER BY s.occurred_at LIMIT 1)
        ) n
    ), gaps AS (
        SELECT t.*,
               CASE WHEN lag(t.occurred_at) OVER w IS NULL
                      OR t.occurred_at > lag(t.occurred_at) OVER w + interval '30 minutes' THEN 1 ELSE 0 END
                   AS starts_session
        FROM timeline t
        WINDOW w AS (PARTITION BY t.site_visitor_hk ORDER BY t.occurred_at, t.raw_event_id NULLS FIRST)
    ), grouped AS (
        SELECT g.*,
               sum(g.starts_session) OVER (PARTITION BY g.site_visitor_hk
                                           ORDER BY g.occurred_at, g.raw_event_id NULLS FIRST) AS session_no
        FROM gaps g
    ), derived AS (
        SELECT g.raw_event_id,
               coalesce(
                   first_value(g.known_session) OVER (
                       PARTITION BY g.site_visitor_hk, g.session_no
                       ORDER BY g.known_session IS NULL, g.occurred_at
                       ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING),
                   g.visitor_id || ':' || to_char(
                       min(g.occurred_at) OVER (PARTITION BY g.site_visitor_hk, g.session_no) AT TIME ZONE 'UTC',
                       'YYYYMMDD"T"HH24MISS.MS')) AS session_id
        FROM grouped g
    ), sessions AS (
        SELECT c.*, d.raw_event_id IS NOT NULL AS derive_session,
               coalesce(c.session_in, d.session_id) AS session_id
        FROM checked c
        LEFT JOIN derived d ON d.raw_event_id = c.raw_event_id
    ), ins AS (
        INSERT INTO staging.site_tracking_events_s (
            raw_event_id, tenant_hk, event_id, record_source, validation_status, validation_reasons, quality_score,
            event_type, page_url, page_host, page_path, page_query, page_title,
            utm_source, utm_medium, utm_campaign, utm_term, utm_content,
            referrer_url, referrer_host, referrer_class,
            user_agent, browser_family, browser_version, os_family, os_version, device_type, is_bot,
            client_ip_hash, received_at, occurred_at, clock_skew_ms,
            session_id, session_derived, visitor_id, visitor_derived, user_id, event_properties,
            site_event_hk, site_session_hk, site_visitor_hk, site_page_hk, business_loaded_at, language,
            screen_width, screen_height, viewport_width, viewport_height)
        SELECT s.raw_event_id, s.tenant_hk, s.event_id, 'staging:' || s.record_source,
               CASE WHEN cardinality(s.invalid_reasons) > 0 THEN 'INVALID'
                    WHEN cardinality(s.suspicious_reasons) > 0 THEN 'SUSPICIOUS' ELSE 'VALID' END,
               s.invalid_reasons || s.suspicious_reasons,
               CASE WHEN cardinality(s.invalid_reasons) > 0 THEN 0
                    ELSE greatest(0, 1.0
                        - CASE WHEN s.page_url IS NULL THEN 0.15 ELSE 0 END
                        - CASE WHEN s.visitor_in IS NULL THEN 0.1 ELSE 0 END
                        - CASE WHEN s.session_in IS NULL THEN 0.1 ELSE 0 END
                        - CASE WHEN s.user_agent IS NULL THEN 0.1 ELSE 0 END
                        - CASE WHEN cardinality(s.suspicious_reasons) > 0 THEN 0.3 ELSE 0 END) END,
               s.event_type, s.page_url, s.page_host, s.page_path, s.page_query, s.page_title,
               util.query_param(s.page_query, 'utm_source'), util.query_param(s.page_query, 'utm_medium'),
               util.query_param(s.page_query, 'utm_campaign'), util.query_param(s.page_query, 'utm_term'),
               util.query_param(s.page_query, 'utm_content'),
               s.referrer_url, s.referrer_host, staging.referrer_class(s.referrer_host, s.page_host),
               s.user_agent, s.browser_family, s.browser_version, s.os_family, s.os_version, s.device_type, s.is_bot,
               s.client_ip_hash, s.received_at, s.occurred_at, s.clock_skew_ms,
               s.session_id, s.derive_session, s.visitor_id, s.visitor_in IS NULL, s.user_id, s.d,
               util.hash_key(s.tenant_hk, s.event_id),
               util.hash_key(s.tenant_hk, s.session_id),
               s.site_visitor_hk,
               util.hash_key(s.tenant_hk, split_part(s.page_url, '?', 1)),
               -- process_batch loads the business layer in the same transaction, so a loadable
               -- row is marked loaded as it is staged (no second write of every row).
               CASE WHEN cardinality(s.invalid_reasons) = 0 THEN clock_timestamp() END,
               s.language, s.screen_width, s.screen_height, s.viewport_width, s.viewport_height
        FROM sessions s
        ON CONFLICT (raw_event_id) DO NOTHING
        RETURNING raw_event_id
    )
    SELECT count(*) INTO v_count FROM ins;
    RETURN v_count;
END;
$$;
