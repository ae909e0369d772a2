-- The pipeline: raw → staging → business, set-based, one bounded batch per call.

-- Running totals per tenant and UTC day, kept by the pipeline in the same transaction as the
-- work they count, so status and dashboard do not count millions of rows on every request.
CREATE TABLE staging.pipeline_stats (
    tenant_hk bytea NOT NULL,
    day date NOT NULL,
    staged bigint NOT NULL DEFAULT 0,
    loaded bigint NOT NULL DEFAULT 0,
    quarantined bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_hk, day)
);
INSERT INTO staging.pipeline_stats (tenant_hk, day, staged, loaded, quarantined)
SELECT tenant_hk, (load_date AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE business_loaded_at IS NOT NULL), count(*) FILTER (WHERE validation_status = 'INVALID')
FROM staging.site_tracking_events_s
GROUP BY 1, 2;

-- Background processing yields to saturated ingestion: after a batch, a server whose ingestion is
-- saturated has the batch's lanes rest for a while, and the background runs of every process wait
-- for it (requests' own runs and manual runs do not). Rows are overwritten, never deleted.
CREATE TABLE staging.pipeline_rest (
    tenant_hk bytea NOT NULL,
    lane smallint NOT NULL,
    rest_until timestamptz NOT NULL,
    PRIMARY KEY (tenant_hk, lane)
);

-- raw → staging: validate, normalise and enrich the given raw events (those not staged yet),
-- deriving visitors and 30-minute sessions where the client sent none.
CREATE FUNCTION staging.stage_events(p_raw_ids bigint[]) RETURNS integer
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
               coalesce(nullif(p -> 'timestamp', 'null'), d -> 'timestamp') AS ts_in,
               coalesce(nullif(p -> 'sent_at', 'null'), d -> 'sent_at') AS sent_in,
               coalesce(p ->> 'session_id', d ->> 'session_id') AS session_in,
               coalesce(p ->> 'visitor_id', d ->> 'visitor_id') AS visitor_in,
               coalesce(p ->> 'user_id', d ->> 'user_id') AS user_id
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
            site_event_hk, site_session_hk, site_visitor_hk, site_page_hk, business_loaded_at)
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
               CASE WHEN cardinality(s.invalid_reasons) = 0 THEN clock_timestamp() END
        FROM sessions s
        ON CONFLICT (raw_event_id) DO NOTHING
        RETURNING raw_event_id
    )
    SELECT count(*) INTO v_count FROM ins;
    RETURN v_count;
END;
$$;

-- staging → business: hubs, links and satellites for the given events' loadable (VALID or
-- SUSPICIOUS) staging rows; idempotent (a replay inserts nothing). Returns the events it added.
-- One statement: the batch's staging rows are read once, and every insert reads them from there.
-- Its inserts all see the vault as it was before the statement, which is all they compare with:
-- hubs skip keys already there, satellites compare with their latest earlier row. An event's links
-- and details are written with its hub, here, so those of the events whose hub this call adds are
-- new by construction and inserted without a conflict check; a replay adds none of them.
CREATE FUNCTION staging.load_business(p_raw_ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_loaded integer;
    v_now timestamptz := clock_timestamp();
BEGIN
    WITH batch AS MATERIALIZED (
        SELECT s.* FROM staging.site_tracking_events_s s
        WHERE s.raw_event_id = ANY (p_raw_ids) AND s.validation_status <> 'INVALID'
    ), visitor_h AS (
        INSERT INTO business.site_visitor_h (site_visitor_hk, site_visitor_bk, tenant_hk, record_source)
        SELECT DISTINCT ON (site_visitor_hk) site_visitor_hk, visitor_id, tenant_hk, 'site_tracking'
        FROM batch
        ON CONFLICT DO NOTHING
    ), session_h AS (
        INSERT INTO business.site_session_h (site_session_hk, site_session_bk, tenant_hk, record_source)
        SELECT DISTINCT ON (site_session_hk) site_session_hk, session_id, tenant_hk, 'site_tracking'
        FROM batch
        ON CONFLICT DO NOTHING
    ), page_h AS (
        INSERT INTO business.site_page_h (site_page_hk, site_page_bk, tenant_hk, record_source)
        SELECT DISTINCT ON (site_page_hk) site_page_hk, split_part(page_url, '?', 1), tenant_hk, 'site_tracking'
        FROM batch WHERE page_url IS NOT NULL
        ON CONFLICT DO NOTHING
    ), event_h AS (
        INSERT INTO business.site_event_h (site_event_hk, site_event_bk, tenant_hk, record_source)
        SELECT DISTINCT ON (site_event_hk) site_event_hk, event_id, tenant_hk, 'site_tracking'
        FROM batch
        ON CONFLICT DO NOTHING
        RETURNING site_event_hk
    ), new_events AS MATERIALIZED (
        SELECT b.* FROM batch b JOIN event_h USING (site_event_hk)
    ), event_session_l AS (
        INSERT INTO business.site_event_session_l (link_event_session_hk, site_event_hk, site_session_hk,
                                                   tenant_hk, record_source)
        SELECT sha256(site_event_hk || site_session_hk), site_event_hk, site_session_hk, tenant_hk, 'site_tracking'
        FROM new_events
    ), event_page_l AS (
        INSERT INTO business.site_event_page_l (link_event_page_hk, site_event_hk, site_page_hk, tenant_hk,
                                                record_source)
        SELECT sha256(site_event_hk || site_page_hk), site_event_hk, site_page_hk, tenant_hk, 'site_tracking'
        FROM new_events WHERE page_url IS NOT NULL
    ), session_visitor_l AS (
        INSERT INTO business.site_session_visitor_l (link_session_visitor_hk, site_session_hk, site_visitor_hk,
                                                     tenant_hk, record_source)
        SELECT DISTINCT ON (1) sha256(site_session_hk || site_visitor_hk), site_session_hk, site_visitor_hk, tenant_hk,
               'site_tracking'
        FROM batch
        ON CONFLICT DO NOTHING
    ), event_details AS (
        -- Events never change: one details row per event.
        INSERT INTO business.site_event_details_s (
            site_event_hk, load_date, hash_diff, tenant_hk, raw_event_id, event_type, occurred_at, received_at,
            page_url, referrer_url, referrer_host, referrer_class, utm_source, utm_medium, utm_campaign, utm_term,
            utm_content, user_id, is_bot, validation_status, quality_score, event_properties, record_source)
        SELECT s.site_event_hk, v_now,
               sha256(convert_to(ROW(s.event_type, s.occurred_at, s.page_url, s.referrer_url, s.user_id,
                                     s.event_properties)::text, 'UTF8')),
               s.tenant_hk, s.raw_event_id, s.event_type, s.occurred_at, s.received_at, s.page_url, s.referrer_url,
               s.referrer_host, s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign, s.utm_term,
               s.utm_content, s.user_id, s.is_bot, s.validation_status, s.quality_score, s.event_properties,
               'site_tracking'
        FROM new_events s
    ), page_details AS (
        -- Page and visitor details: a new row only when the attributes (hash_diff) change.
        INSERT INTO business.site_page_details_s (site_page_hk, load_date, hash_diff, tenant_hk, page_host, page_path,
                                                  page_title, record_source)
        SELECT n.site_page_hk, v_now, n.hash_diff, n.tenant_hk, n.page_host, n.page_path, n.page_title, 'site_tracking'
        FROM (
            SELECT l.site_page_hk, l.tenant_hk, l.page_host, l.page_path,
                   coalesce(l.page_title, cur.page_title) AS page_title,
                   sha256(convert_to(ROW(l.page_host, l.page_path,
                                         coalesce(l.page_title, cur.page_title))::text, 'UTF8')) AS hash_diff,
                   cur.hash_diff AS current_hash_diff
            FROM (SELECT DISTINCT ON (s.site_page_hk) s.* FROM batch s WHERE s.page_url IS NOT NULL
                  ORDER BY s.site_page_hk, s.occurred_at DESC, s.raw_event_id DESC) l
            LEFT JOIN LATERAL (SELECT x.hash_diff, x.page_title FROM business.site_page_details_s x
                               WHERE x.site_page_hk = l.site_page_hk ORDER BY x.load_date DESC LIMIT 1) cur ON true
        ) n
        WHERE n.hash_diff IS DISTINCT FROM n.current_hash_diff
    ), visitor_details AS (
        INSERT INTO business.site_visitor_details_s (site_visitor_hk, load_date, hash_diff, tenant_hk, user_id,
                                                     browser_family, browser_version, os_family, os_version,
                                                     device_type, is_bot, is_derived, record_source)
        SELECT n.site_visitor_hk, v_now, n.hash_diff, n.tenant_hk, n.user_id, n.browser_family, n.browser_version,
               n.os_family, n.os_version, n.device_type, n.is_bot, n.visitor_derived, 'site_tracking'
        FROM (
            SELECT DISTINCT ON (s.site_visitor_hk) s.*,
                   sha256(convert_to(ROW(s.user_id, s.browser_family, s.browser_version, s.os_family, s.os_version,
                                         s.device_type, s.is_bot, s.visitor_derived)::text, 'UTF8')) AS hash_diff
            FROM batch s
            ORDER BY s.site_visitor_hk, s.occurred_at DESC, s.raw_event_id DESC
        ) n
        WHERE n.hash_diff IS DISTINCT FROM (SELECT x.hash_diff FROM business.site_visitor_details_s x
                                            WHERE x.site_visitor_hk = n.site_visitor_hk
                                            ORDER BY x.load_date DESC LIMIT 1)
    ), session_summary AS (
        -- Session summaries, brought up to date with the events newly added to each session: the
        -- previous summary combined with this batch's events (so the work does not grow with the
        -- session), a new satellite row only when the result differs.
        INSERT INTO business.site_session_summary_s (
            site_session_hk, load_date, hash_diff, tenant_hk, session_start, session_end, page_views, event_count,
            duration_seconds, entry_page, exit_page, is_bounce, is_bot, referrer_host, referrer_class, utm_source,
            utm_medium, utm_campaign, utm_term, utm_content, record_source)
        SELECT n.site_session_hk, v_now, n.hash_diff, n.tenant_hk, n.session_start, n.session_end, n.page_views,
               n.event_count, extract(epoch FROM n.session_end - n.session_start)::integer, n.entry_page, n.exit_page,
               n.page_views <= 1, n.is_bot, n.referrer_host, n.referrer_class, n.utm_source, n.utm_medium,
               n.utm_campaign, n.utm_term, n.utm_content, 'site_tracking'
        FROM (
            SELECT m.*,
                   sha256(convert_to(ROW(m.session_start, m.session_end, m.page_views, m.event_count, m.entry_page,
                                         m.exit_page, m.is_bot, m.referrer_host, m.utm_source, m.utm_medium,
                                         m.utm_campaign, m.utm_term, m.utm_content)::text, 'UTF8')) AS hash_diff
            FROM (
                SELECT b.site_session_hk, b.tenant_hk, p.hash_diff AS previous_hash_diff,
                       least(p.session_start, b.first_at) AS session_start,
                       greatest(p.session_end, b.last_at) AS session_end,
                       coalesce(p.page_views, 0) + b.page_views AS page_views,
                       coalesce(p.event_count, 0) + b.event_count AS event_count,
                       CASE WHEN p.entry_page IS NULL OR b.first_page_at < p.session_start
                            THEN coalesce(b.entry_page, p.entry_page) ELSE p.entry_page END AS entry_page,
                       CASE WHEN p.exit_page IS NULL OR b.last_page_at >= p.session_end
                            THEN coalesce(b.exit_page, p.exit_page) ELSE p.exit_page END AS exit_page,
                       coalesce(p.is_bot, false) OR b.is_bot AS is_bot,
                       CASE WHEN f.batch_first THEN b.referrer_host ELSE p.referrer_host END AS referrer_host,
                       CASE WHEN f.batch_first THEN b.referrer_class ELSE p.referrer_class END AS referrer_class,
                       CASE WHEN f.batch_first THEN b.utm_source ELSE p.utm_source END AS utm_source,
                       CASE WHEN f.batch_first THEN b.utm_medium ELSE p.utm_medium END AS utm_medium,
                       CASE WHEN f.batch_first THEN b.utm_campaign ELSE p.utm_campaign END AS utm_campaign,
                       CASE WHEN f.batch_first THEN b.utm_term ELSE p.utm_term END AS utm_term,
                       CASE WHEN f.batch_first THEN b.utm_content ELSE p.utm_content END AS utm_content
                FROM (
                    SELECT s.site_session_hk, min(s.tenant_hk) AS tenant_hk,
                           min(s.occurred_at) AS first_at, max(s.occurred_at) AS last_at,
                           count(*) FILTER (WHERE s.event_type = 'page_view')::integer AS page_views,
                           count(*)::integer AS event_count,
                           min(s.occurred_at) FILTER (WHERE s.page_url IS NOT NULL) AS first_page_at,
                           max(s.occurred_at) FILTER (WHERE s.page_url IS NOT NULL) AS last_page_at,
                           (array_agg(s.page_url ORDER BY s.occurred_at, s.raw_event_id)
                                FILTER (WHERE s.page_url IS NOT NULL))[1] AS entry_page,
                           (array_agg(s.page_url ORDER BY s.occurred_at DESC, s.raw_event_id DESC)
                                FILTER (WHERE s.page_url IS NOT NULL))[1] AS exit_page,
                           bool_or(s.is_bot) AS is_bot,
                           (array_agg(s.referrer_host ORDER BY s.occurred_at, s.raw_event_id))[1] AS referrer_host,
                           (array_agg(s.referrer_class ORDER BY s.occurred_at, s.raw_event_id))[1] AS referrer_class,
                           (array_agg(s.utm_source ORDER BY s.occurred_at, s.raw_event_id))[1] AS utm_source,
                           (array_agg(s.utm_medium ORDER BY s.occurred_at, s.raw_event_id))[1] AS utm_medium,
                           (array_agg(s.utm_campaign ORDER BY s.occurred_at, s.raw_event_id))[1] AS utm_campaign,
                           (array_agg(s.utm_term ORDER BY s.occurred_at, s.raw_event_id))[1] AS utm_term,
                           (array_agg(s.utm_content ORDER BY s.occurred_at, s.raw_event_id))[1] AS utm_content
                    FROM new_events s
                    GROUP BY s.site_session_hk
                ) b
                LEFT JOIN LATERAL (SELECT x.* FROM business.site_session_summary_s x
                                   WHERE x.site_session_hk = b.site_session_hk
                                   ORDER BY x.load_date DESC LIMIT 1) p ON true
                -- The session's first event is in this batch: take its referrer and campaign.
                CROSS JOIN LATERAL (SELECT p.site_session_hk IS NULL OR b.first_at < p.session_start
                                           AS batch_first) f
            ) m
        ) n
        WHERE n.hash_diff IS DISTINCT FROM n.previous_hash_diff
    )
    SELECT count(*) INTO v_loaded FROM event_h;
    RETURN v_loaded;
END;
$$;

-- Claims up to p_limit due events of one tenant, oldest first, from the lanes (all by default)
-- no other run holds, and processes them in the caller's transaction. Runs of different lanes
-- proceed in parallel (they share no visitor's sessions); with p_wait a run waits for its lanes
-- instead of skipping busy ones. A batch that fails is retried event by event, so one bad event
-- is marked ERROR (retried later with backoff) without holding back the others.
CREATE FUNCTION staging.process_batch(
    p_tenant_hk bytea, p_limit integer DEFAULT 1000, p_lanes smallint[] DEFAULT NULL, p_wait boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_lane smallint;
    v_lanes smallint[] := '{}';
    v_ids bigint[];
    v_done bigint[];
    v_id bigint;
    v_staged integer := 0;
    v_loaded integer := 0;
    v_errors integer := 0;
    v_quarantined integer;
BEGIN
    -- Lanes are locked in ascending order, so runs waiting for several never deadlock.
    FOR v_lane IN SELECT DISTINCT l FROM unnest(coalesce(p_lanes, '{0,1,2,3,4,5,6,7}')) AS l ORDER BY 1 LOOP
        IF p_wait THEN
            PERFORM pg_advisory_xact_lock(7071, hashtext(encode(p_tenant_hk, 'hex') || '/' || v_lane));
        ELSIF NOT pg_try_advisory_xact_lock(7071, hashtext(encode(p_tenant_hk, 'hex') || '/' || v_lane)) THEN
            CONTINUE;
        END IF;
        v_lanes := v_lanes || v_lane;
    END LOOP;
    -- The oldest due events of the locked lanes (other lanes' entries are skipped in the index).
    SELECT array_agg(c.raw_event_id ORDER BY c.raw_event_id) INTO v_ids
    FROM (
        SELECT r.raw_event_id FROM raw.site_tracking_events_r r
        WHERE r.tenant_hk = p_tenant_hk AND r.processing_lane = ANY (v_lanes)
          AND r.processing_status <> 'PROCESSED'
          AND (r.processing_status = 'PENDING' OR r.next_attempt_at <= now())
        ORDER BY r.raw_event_id + 0  -- the pending index's order (see raw.site_tracking_events_r)
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) c;
    IF v_ids IS NULL THEN
        RETURN jsonb_build_object('claimed', 0, 'staged', 0, 'loaded', 0, 'quarantined', 0, 'errors', 0,
                                  'latencies_ms', '[]'::jsonb);
    END IF;

    BEGIN
        v_staged := staging.stage_events(v_ids);
        v_loaded := staging.load_business(v_ids);
        v_done := v_ids;
    EXCEPTION WHEN OTHERS THEN
        v_staged := 0;
        v_loaded := 0;
        v_done := '{}';
        FOREACH v_id IN ARRAY v_ids LOOP
            BEGIN
                v_staged := v_staged + staging.stage_events(ARRAY[v_id]);
                v_loaded := v_loaded + staging.load_business(ARRAY[v_id]);
                v_done := v_done || v_id;
            EXCEPTION WHEN OTHERS THEN
                v_errors := v_errors + 1;
                UPDATE raw.site_tracking_events_r
                SET processing_status = 'ERROR',
                    error_message = left(SQLERRM, 1000),
                    retry_count = retry_count + 1,
                    next_attempt_at = CASE WHEN retry_count + 1 < 5
                                           THEN now() + interval '10 seconds' * power(2, retry_count) END
                WHERE raw_event_id = v_id;
            END;
        END LOOP;
    END;
    UPDATE raw.site_tracking_events_r
    SET processing_status = 'PROCESSED', processed_at = clock_timestamp(), error_message = NULL,
        next_attempt_at = NULL
    WHERE raw_event_id = ANY (v_done);

    -- Rows staged by this transaction carry a load_date at or after its start.
    SELECT count(*) INTO v_quarantined FROM staging.site_tracking_events_s
    WHERE raw_event_id = ANY (v_ids) AND validation_status = 'INVALID' AND load_date >= now();
    INSERT INTO staging.pipeline_stats AS t (tenant_hk, day, staged, loaded, quarantined)
    VALUES (p_tenant_hk, (now() AT TIME ZONE 'UTC')::date, v_staged, v_loaded, v_quarantined)
    ON CONFLICT (tenant_hk, day) DO UPDATE
        SET staged = t.staged + EXCLUDED.staged, loaded = t.loaded + EXCLUDED.loaded,
            quarantined = t.quarantined + EXCLUDED.quarantined;

    RETURN jsonb_build_object(
        'claimed', cardinality(v_ids),
        'staged', v_staged,
        'loaded', v_loaded,
        'quarantined', v_quarantined,
        'errors', v_errors,
        'latencies_ms', (SELECT coalesce(jsonb_agg(round(extract(epoch FROM s.business_loaded_at - s.received_at)
                                                       * 1000, 1)), '[]'::jsonb)
                         FROM staging.site_tracking_events_s s
                         WHERE s.raw_event_id = ANY (v_ids) AND s.business_loaded_at IS NOT NULL));
END;
$$;

-- Puts failed (ERROR) and quarantined (INVALID) events of a tenant (NULL: all) back in the queue.
CREATE FUNCTION staging.requeue_failed(p_tenant_hk bytea DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_quarantined integer;
    v_failed integer;
BEGIN
    WITH q AS (
        DELETE FROM staging.site_tracking_events_s s
        WHERE s.validation_status = 'INVALID' AND (p_tenant_hk IS NULL OR s.tenant_hk = p_tenant_hk)
        RETURNING s.raw_event_id, s.tenant_hk, (s.load_date AT TIME ZONE 'UTC')::date AS day
    ), r AS (
        UPDATE raw.site_tracking_events_r r
        SET processing_status = 'PENDING', processed_at = NULL
        FROM q WHERE r.raw_event_id = q.raw_event_id
        RETURNING 1
    ), uncount AS (
        UPDATE staging.pipeline_stats t
        SET staged = t.staged - c.n, quarantined = t.quarantined - c.n
        FROM (SELECT tenant_hk, day, count(*) AS n FROM q GROUP BY tenant_hk, day) c
        WHERE t.tenant_hk = c.tenant_hk AND t.day = c.day
    )
    SELECT count(*) INTO v_quarantined FROM r;

    UPDATE raw.site_tracking_events_r
    SET processing_status = 'PENDING', retry_count = 0, next_attempt_at = NULL
    WHERE processing_status = 'ERROR' AND (p_tenant_hk IS NULL OR tenant_hk = p_tenant_hk);
    GET DIAGNOSTICS v_failed = ROW_COUNT;

    RETURN jsonb_build_object('requeued_quarantined', v_quarantined, 'requeued_errors', v_failed);
END;
$$;
