-- staging → business: hubs, links and satellites for the given events' loadable (VALID or
-- SUSPICIOUS) staging rows; idempotent (a replay inserts nothing). Returns the events it added.
-- One statement: the batch's staging rows are read once, and every insert reads them from there.
-- Its inserts all see the vault as it was before the statement, which is all they compare with:
-- hubs skip keys already there, satellites compare with their latest earlier row. An event's links
-- and details are written with its hub, here, so those of the events whose hub this call adds are
-- new by construction and inserted without a conflict check; a replay adds none of them.
CREATE OR REPLACE FUNCTION staging.load_business(p_raw_ids bigint[]) RETURNS integer
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
            utm_content, user_id, is_bot, validation_status, quality_score, event_properties, record_source,
            language, screen_width, screen_height, viewport_width, viewport_height)
        SELECT s.site_event_hk, v_now,
               sha256(convert_to(ROW(s.event_type, s.occurred_at, s.page_url, s.referrer_url, s.user_id,
                                     s.event_properties)::text, 'UTF8')),
               s.tenant_hk, s.raw_event_id, s.event_type, s.occurred_at, s.received_at, s.page_url, s.referrer_url,
               s.referrer_host, s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign, s.utm_term,
               s.utm_content, s.user_id, s.is_bot, s.validation_status, s.quality_score, s.event_properties,
               'site_tracking', s.language, s.screen_width, s.screen_height, s.viewport_width, s.viewport_height
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
