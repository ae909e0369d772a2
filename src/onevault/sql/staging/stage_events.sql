-- raw → staging: validate, normalise and enrich the given raw events (those not staged yet),
-- deriving visitors and 30-minute sessions where the client sent none (docs/vault.md). Returns
-- how many it staged, the staged events it moved to another derived session, and the earliest
-- time a staged event of the sessions its valid events belong to can have happened (derived_from:
-- for a derived session, the earliest one it read; for a client session, its start in
-- business.site_session_state or the event's own time; NULL when there are none;
-- staging.load_sessions bounds its lookups with it).
-- Staging is partitioned by day: the staged events of the sessions the new events can change are
-- looked up by staging.visitor_timelines, which plans its lookups for the days they reach. The
-- main statement, which reads, parses and writes, names no staged event's table but the one it
-- inserts into, and reads its raw events through raw.events_by_id, so its plan is kept (planning
-- it for every batch cost ~29 ms); a move of staged events is written by id after it.
-- The caller holds the lanes of the events (staging.process_batch).
-- requires: util/language_tag.sql
-- requires: util/pixels.sql
-- requires: staging/visitor_hk.sql
-- requires: staging/derived_session_id.sql
-- requires: staging/payload_value.sql
-- requires: staging/occurred_at.sql
-- requires: staging/visitor_timelines.sql
-- requires: raw/events_by_id.sql
CREATE OR REPLACE FUNCTION staging.stage_events(
    p_raw_ids bigint[], OUT staged integer, OUT moved bigint[], OUT derived_from timestamptz
)
LANGUAGE plpgsql AS $$
DECLARE
    -- The staged events that move to another derived session.
    v_move_session_ids text[];
    v_move_sessions bytea[];
BEGIN
    WITH src AS (
        SELECT r.raw_event_id, r.tenant_hk, r.event_id, r.record_source, r.received_timestamp AS received_at,
               r.user_agent, r.client_ip_hash, r.raw_payload AS p,
               CASE WHEN jsonb_typeof(r.raw_payload -> 'event_data') = 'object'
                    THEN r.raw_payload -> 'event_data' ELSE '{}'::jsonb END AS d,
               r.raw_payload ? 'event_data' AND r.raw_payload -> 'event_data' <> 'null'::jsonb
                   AND jsonb_typeof(r.raw_payload -> 'event_data') <> 'object' AS bad_event_data
        FROM raw.events_by_id(p_raw_ids) r
    ), fields AS MATERIALIZED (
        -- Known keys are read at the top level first, then inside event_data. Materialised (like
        -- the next step) so that each parse runs once per event, not once per use.
        SELECT src.*,
               coalesce(staging.payload_value(p, 'event_type') #>> '{}', 'page_view') AS event_type,
               staging.payload_value(p, 'page_url') #>> '{}' AS page_url_in,
               staging.payload_value(p, 'referrer') #>> '{}' AS referrer_in,
               staging.payload_value(p, 'page_title') #>> '{}' AS page_title,
               staging.payload_value(p, 'timestamp') AS ts_in,
               staging.payload_value(p, 'sent_at') AS sent_in,
               util.canon_id(staging.payload_value(p, 'session_id') #>> '{}') AS session_in,
               util.canon_id(staging.payload_value(p, 'visitor_id') #>> '{}') AS visitor_in,
               staging.payload_value(p, 'visitor_id') #>> '{}' AS visitor_sent,
               nullif(btrim(staging.payload_value(p, 'user_id') #>> '{}', E' \t\r\n\f\v'), '') AS user_id,
               util.language_tag(staging.payload_value(p, 'language') #>> '{}') AS language,
               util.pixels(staging.payload_value(p, 'screen_width')) AS screen_width,
               util.pixels(staging.payload_value(p, 'screen_height')) AS screen_height,
               util.pixels(staging.payload_value(p, 'viewport_width')) AS viewport_width,
               util.pixels(staging.payload_value(p, 'viewport_height')) AS viewport_height
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
               staging.occurred_at(f.ts, f.sent, f.received_at) AS occurred_at,
               CASE WHEN f.sent IS NOT NULL
                    THEN (extract(epoch FROM (f.sent - f.received_at)) * 1000)::bigint END AS clock_skew_ms,
               coalesce(f.visitor_in, staging.derived_visitor_id(f.tenant_hk, f.client_ip_hash, f.user_agent))
                   AS visitor_id,
               staging.visitor_hk(f.tenant_hk, f.visitor_sent, f.client_ip_hash, f.user_agent) AS site_visitor_hk
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
                   CASE WHEN e.occurred_at < timestamptz '2000-01-01 00:00:00+00' THEN 'timestamp is before 2000' END
               ], NULL) AS invalid_reasons,
               array_remove(ARRAY[
                   CASE WHEN e.is_bot THEN 'bot user agent' END,
                   CASE WHEN e.occurred_at < e.received_at - interval '30 days'
                         AND e.occurred_at >= timestamptz '2000-01-01 00:00:00+00'
                        THEN 'timestamp more than 30 days before receipt' END
               ], NULL) AS suspicious_reasons
        FROM enriched e
    ), fresh AS (
        -- Events without a client session: their sessions are derived per visitor.
        SELECT c.tenant_hk, c.site_visitor_hk, c.visitor_id, c.occurred_at, c.raw_event_id,
               util.hash_key(c.tenant_hk, c.event_id) AS site_event_hk
        FROM checked c
        WHERE cardinality(c.invalid_reasons) = 0 AND c.session_in IS NULL
    ), timeline AS (
        -- The new events and the staged events of their visitors' sessions they can change.
        SELECT f.tenant_hk, f.site_visitor_hk, f.visitor_id, f.occurred_at, f.raw_event_id, f.site_event_hk,
               NULL::bytea AS staged_session_hk
        FROM fresh f
        UNION ALL
        SELECT t.*
        FROM staging.visitor_timelines((SELECT array_agg(f.site_visitor_hk) FROM fresh f),
                                       (SELECT array_agg(f.occurred_at) FROM fresh f)) t
    ), gaps AS (
        SELECT t.*,
               CASE WHEN t.occurred_at > lag(t.occurred_at) OVER w + interval '30 minutes'
                    THEN 1 ELSE 0 END AS starts_session
        FROM timeline t
        WINDOW w AS (PARTITION BY t.site_visitor_hk ORDER BY t.occurred_at, t.site_event_hk)
    ), grouped AS (
        SELECT g.*,
               sum(g.starts_session) OVER (PARTITION BY g.site_visitor_hk
                                           ORDER BY g.occurred_at, g.site_event_hk) AS session_no
        FROM gaps g
    ), derived AS MATERIALIZED (
        -- A derived session is named after its visitor and its earliest event: a function of the
        -- visitor's final timeline, whatever order the events came in.
        SELECT d.*, util.derived_key(d.tenant_hk, d.session_id) AS site_session_hk
        FROM (
            SELECT g.raw_event_id, g.tenant_hk, g.staged_session_hk,
                   staging.derived_session_id(
                       g.visitor_id, min(g.occurred_at) OVER (PARTITION BY g.site_visitor_hk, g.session_no)) AS session_id
            FROM grouped g
        ) d
    ), sessions AS (
        SELECT c.*, d.raw_event_id IS NOT NULL AS derive_session,
               coalesce(c.session_in, d.session_id) AS session_id,
               CASE WHEN d.raw_event_id IS NOT NULL THEN d.site_session_hk
                    ELSE util.hash_key(c.tenant_hk, c.session_in) END AS site_session_hk
        FROM checked c
        LEFT JOIN derived d ON d.raw_event_id = c.raw_event_id AND d.staged_session_hk IS NULL
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
               s.site_session_hk,
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
    SELECT (SELECT count(*) FROM ins), array_agg(d.raw_event_id), array_agg(d.session_id),
           array_agg(d.site_session_hk),
           -- The client sessions' staged events happened from their start (the earliest staged
           -- event of the session: its state) or from the new event, when earlier.
           least((SELECT min(t.occurred_at) FROM timeline t) - interval '30 minutes',
                 (SELECT min(least(c.occurred_at, st.session_start))
                  FROM checked c
                  LEFT JOIN business.site_session_state st
                         ON st.site_session_hk = util.hash_key(c.tenant_hk, c.session_in)
                  WHERE c.session_in IS NOT NULL AND cardinality(c.invalid_reasons) = 0))
    INTO staged, moved, v_move_session_ids, v_move_sessions, derived_from
    FROM derived d
    WHERE d.staged_session_hk IS NOT NULL AND d.staged_session_hk <> d.site_session_hk;
    -- Staged events whose derived session changed (the business layer records the move).
    IF moved IS NULL THEN
        moved := '{}';
    ELSE
        EXECUTE $moved$
            UPDATE staging.site_tracking_events_s s
            SET session_id = m.session_id, site_session_hk = m.site_session_hk
            FROM unnest($1::bigint[], $2::text[], $3::bytea[]) m(raw_event_id, session_id, site_session_hk)
            WHERE s.raw_event_id = ANY ($1) AND s.raw_event_id = m.raw_event_id
        $moved$
        USING moved, v_move_session_ids, v_move_sessions;
    END IF;
END;
$$;
