-- staging → business: hubs, links and satellites of the given events' loadable (VALID or
-- SUSPICIOUS) staging rows, and the derived data they touch, recomputed from all the events it
-- depends on (docs/vault.md). p_moved: staged events stage_events moved to another derived
-- session. p_replay: the events were loaded before (staging.rebuild_vault), so their links are
-- written where missing too. Idempotent: a replay inserts nothing. Returns the events it added.
-- The sessions it touches wait in mart.session_queue for their information marts, with the
-- events they gained.
-- The caller holds the lanes of the events (staging.process_batch), so no other run touches their
-- sessions. Visitors and pages, which runs of different lanes may share, need no lock: their
-- current details are the latest event's, which the run that loads it always writes. One load
-- date for the whole batch.
-- requires: util/hash_diff.sql
-- requires: util/iso_utc.sql
CREATE OR REPLACE FUNCTION staging.load_business(
    p_raw_ids bigint[], p_moved bigint[] DEFAULT '{}', p_replay boolean DEFAULT false
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_loaded integer;
    v_load timestamptz := clock_timestamp();
    v_ghost CONSTANT bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
BEGIN
    WITH batch AS MATERIALIZED (
        -- Record sources as the raw layer wrote them ('staging:' dropped).
        SELECT s.*, substr(s.record_source, 9) AS source, coalesce(s.site_page_hk, v_ghost) AS page_hk
        FROM staging.site_tracking_events_s s
        WHERE s.raw_event_id = ANY (p_raw_ids) AND s.validation_status <> 'INVALID'
    ), visitor_h AS (
        INSERT INTO business.site_visitor_h (site_visitor_hk, site_visitor_bk, tenant_hk, load_date, record_source)
        SELECT DISTINCT ON (site_visitor_hk) site_visitor_hk, visitor_id, tenant_hk, v_load, source
        FROM batch
        ORDER BY site_visitor_hk, occurred_at, site_event_hk
        ON CONFLICT DO NOTHING
    ), page_h AS (
        INSERT INTO business.site_page_h (site_page_hk, site_page_bk, tenant_hk, load_date, record_source)
        SELECT DISTINCT ON (site_page_hk) site_page_hk, split_part(page_url, '?', 1), tenant_hk, v_load, source
        FROM batch WHERE page_url IS NOT NULL
        ORDER BY site_page_hk, occurred_at, site_event_hk
        ON CONFLICT DO NOTHING
    ), session_h AS (
        INSERT INTO business.site_session_h (site_session_hk, site_session_bk, tenant_hk, load_date, record_source)
        SELECT DISTINCT ON (site_session_hk) site_session_hk, session_id, tenant_hk, v_load, source
        FROM batch
        ORDER BY site_session_hk, occurred_at, site_event_hk
        ON CONFLICT DO NOTHING
    ), event_h AS (
        INSERT INTO business.site_event_h (site_event_hk, site_event_bk, tenant_hk, load_date, record_source)
        SELECT DISTINCT ON (site_event_hk) site_event_hk, event_id, tenant_hk, v_load, source
        FROM batch
        ON CONFLICT DO NOTHING
        RETURNING site_event_hk
    ), new_events AS MATERIALIZED (
        SELECT b.* FROM batch b JOIN event_h USING (site_event_hk)
    ), event_session_l AS (
        -- An event's links and details are written with its hub: new by construction.
        INSERT INTO business.site_event_session_l (link_event_session_hk, site_event_hk, site_session_hk,
                                                   tenant_hk, load_date, record_source)
        SELECT sha256(site_event_hk || site_session_hk), site_event_hk, site_session_hk, tenant_hk, v_load, source
        FROM new_events
    ), event_page_l AS (
        INSERT INTO business.site_event_page_l (link_event_page_hk, site_event_hk, site_page_hk, tenant_hk,
                                                load_date, record_source)
        SELECT sha256(site_event_hk || page_hk), site_event_hk, page_hk, tenant_hk, v_load, source
        FROM new_events
    ), replayed_page_l AS (
        INSERT INTO business.site_event_page_l (link_event_page_hk, site_event_hk, site_page_hk, tenant_hk,
                                                load_date, record_source)
        SELECT sha256(site_event_hk || page_hk), site_event_hk, page_hk, tenant_hk, v_load, source
        FROM batch
        -- (The events a replay loads anew, after retention deleted them, got theirs above: a
        -- statement does not see its own inserts, so a second insert of one would fail.)
        WHERE p_replay AND site_event_hk NOT IN (SELECT n.site_event_hk FROM new_events n)
        ON CONFLICT DO NOTHING
    ), session_visitor_l AS (
        INSERT INTO business.site_session_visitor_l (link_session_visitor_hk, site_session_hk, site_visitor_hk,
                                                     tenant_hk, load_date, record_source)
        SELECT DISTINCT ON (1) sha256(site_session_hk || site_visitor_hk), site_session_hk, site_visitor_hk,
               tenant_hk, v_load, source
        FROM batch
        ORDER BY 1, occurred_at, site_event_hk
        ON CONFLICT DO NOTHING
    ), event_details AS (
        -- Events never change: one details row per event; its applied date is occurred_at.
        INSERT INTO business.site_event_details_s (
            site_event_hk, load_date, hash_diff, tenant_hk, raw_event_id, event_type, occurred_at, received_at,
            page_url, referrer_url, referrer_host, referrer_class, utm_source, utm_medium, utm_campaign, utm_term,
            utm_content, user_id, is_bot, validation_status, quality_score, event_properties, record_source,
            language, screen_width, screen_height, viewport_width, viewport_height)
        SELECT s.site_event_hk, v_load,
               util.hash_diff(s.event_type, util.iso_utc(s.occurred_at), s.page_url, s.referrer_url, s.user_id,
                              s.event_properties::text),
               s.tenant_hk, s.raw_event_id, s.event_type, s.occurred_at, s.received_at, s.page_url, s.referrer_url,
               s.referrer_host, s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign, s.utm_term,
               s.utm_content, s.user_id, s.is_bot, s.validation_status, s.quality_score, s.event_properties,
               s.source, s.language, s.screen_width, s.screen_height, s.viewport_width, s.viewport_height
        FROM new_events s
    ), page_states AS (
        -- Page and visitor details by applied date: a row for each event whose attributes differ
        -- from the state just before it on the timeline of the batch's events and the satellite's
        -- rows (read from the one before the batch's first event on), and one for the latest event
        -- of all: so the current row (the latest by applied date) is always the latest event's
        -- state — also when runs of two lanes load a visitor's or a page's events at once — and a
        -- late event, written in the past, never overrides it.
        SELECT DISTINCT ON (s.site_page_hk, s.occurred_at) s.site_page_hk, s.tenant_hk, s.occurred_at, s.source,
               s.page_host, s.page_path, s.page_title,
               util.hash_diff(s.page_host, s.page_path, s.page_title) AS hash_diff
        FROM batch s WHERE s.page_title IS NOT NULL AND s.site_page_hk IS NOT NULL
        ORDER BY s.site_page_hk, s.occurred_at, s.site_event_hk DESC
    ), page_timeline AS (
        SELECT n.site_page_hk, n.occurred_at AS applied_date, v_load AS load_date, n.hash_diff, true AS is_new
        FROM page_states n
        UNION ALL
        SELECT f.site_page_hk, x.applied_date, x.load_date, x.hash_diff, false
        FROM (SELECT p.site_page_hk, min(p.occurred_at) AS first_at FROM page_states p GROUP BY 1) f
        CROSS JOIN LATERAL (
            (SELECT x.applied_date, x.load_date, x.hash_diff FROM business.site_page_details_s x
             WHERE x.site_page_hk = f.site_page_hk AND x.applied_date <= f.first_at
             ORDER BY x.applied_date DESC, x.load_date DESC LIMIT 1)
            UNION ALL
            SELECT x.applied_date, x.load_date, x.hash_diff FROM business.site_page_details_s x
            WHERE x.site_page_hk = f.site_page_hk AND x.applied_date > f.first_at
        ) x
    ), page_details AS (
        INSERT INTO business.site_page_details_s (site_page_hk, applied_date, load_date, hash_diff, tenant_hk,
                                                  page_host, page_path, page_title, record_source)
        SELECT n.site_page_hk, n.occurred_at, v_load, n.hash_diff, n.tenant_hk, n.page_host, n.page_path,
               n.page_title, n.source
        FROM (SELECT t.*, lag(t.hash_diff) OVER w AS before, lag(t.applied_date) OVER w AS before_at,
                     lead(t.applied_date) OVER w IS NULL AS latest
              FROM page_timeline t
              WINDOW w AS (PARTITION BY t.site_page_hk ORDER BY t.applied_date, t.load_date)) c
        JOIN page_states n ON n.site_page_hk = c.site_page_hk AND n.occurred_at = c.applied_date
        WHERE c.is_new
          AND (c.hash_diff IS DISTINCT FROM c.before OR (c.latest AND c.before_at IS DISTINCT FROM c.applied_date))
    ), visitor_states AS (
        SELECT DISTINCT ON (s.site_visitor_hk, s.occurred_at) s.site_visitor_hk, s.tenant_hk, s.occurred_at,
               s.source, s.user_id, s.browser_family, s.browser_version, s.os_family, s.os_version, s.device_type,
               s.is_bot, s.visitor_derived,
               util.hash_diff(s.user_id, s.browser_family, s.browser_version, s.os_family, s.os_version,
                              s.device_type, s.is_bot::text, s.visitor_derived::text) AS hash_diff
        FROM batch s
        ORDER BY s.site_visitor_hk, s.occurred_at, s.site_event_hk DESC
    ), visitor_timeline AS (
        SELECT n.site_visitor_hk, n.occurred_at AS applied_date, v_load AS load_date, n.hash_diff, true AS is_new
        FROM visitor_states n
        UNION ALL
        SELECT f.site_visitor_hk, x.applied_date, x.load_date, x.hash_diff, false
        FROM (SELECT v.site_visitor_hk, min(v.occurred_at) AS first_at FROM visitor_states v GROUP BY 1) f
        CROSS JOIN LATERAL (
            (SELECT x.applied_date, x.load_date, x.hash_diff FROM business.site_visitor_details_s x
             WHERE x.site_visitor_hk = f.site_visitor_hk AND x.applied_date <= f.first_at
             ORDER BY x.applied_date DESC, x.load_date DESC LIMIT 1)
            UNION ALL
            SELECT x.applied_date, x.load_date, x.hash_diff FROM business.site_visitor_details_s x
            WHERE x.site_visitor_hk = f.site_visitor_hk AND x.applied_date > f.first_at
        ) x
    ), visitor_details AS (
        INSERT INTO business.site_visitor_details_s (site_visitor_hk, applied_date, load_date, hash_diff, tenant_hk,
                                                     user_id, browser_family, browser_version, os_family,
                                                     os_version, device_type, is_bot, is_derived, record_source)
        SELECT n.site_visitor_hk, n.occurred_at, v_load, n.hash_diff, n.tenant_hk, n.user_id, n.browser_family,
               n.browser_version, n.os_family, n.os_version, n.device_type, n.is_bot, n.visitor_derived, n.source
        FROM (SELECT t.*, lag(t.hash_diff) OVER w AS before, lag(t.applied_date) OVER w AS before_at,
                     lead(t.applied_date) OVER w IS NULL AS latest
              FROM visitor_timeline t
              WINDOW w AS (PARTITION BY t.site_visitor_hk ORDER BY t.applied_date, t.load_date)) c
        JOIN visitor_states n ON n.site_visitor_hk = c.site_visitor_hk AND n.occurred_at = c.applied_date
        WHERE c.is_new
          AND (c.hash_diff IS DISTINCT FROM c.before OR (c.latest AND c.before_at IS DISTINCT FROM c.applied_date))
    )
    SELECT count(*) INTO v_loaded FROM event_h;

    -- Sessions: the moves stage_events made, then the summary, state and holder of every session
    -- the batch touches (a new statement: it sees the rows written above). Run with EXECUTE, so
    -- it is planned for this batch's values each time: a cached generic plan joins all of staging
    -- instead of reading the batch's sessions by index (48 → 16 ms per 1,000 events).
    EXECUTE $sessions$
    WITH moved AS MATERIALIZED (
        SELECT s.site_event_hk, s.site_session_hk, s.tenant_hk, substr(s.record_source, 9) AS source,
               coalesce((SELECT e.site_session_hk FROM business.site_event_session_eff_s e
                         WHERE e.site_event_hk = s.site_event_hk ORDER BY e.load_date DESC LIMIT 1),
                        (SELECT l.site_session_hk FROM business.site_event_session_l l
                         WHERE l.site_event_hk = s.site_event_hk ORDER BY l.load_date DESC LIMIT 1))
                   AS previous_session_hk
        FROM staging.site_tracking_events_s s
        WHERE s.raw_event_id = ANY ($2)
    ), moved_l AS (
        INSERT INTO business.site_event_session_l (link_event_session_hk, site_event_hk, site_session_hk,
                                                   tenant_hk, load_date, record_source)
        SELECT sha256(site_event_hk || site_session_hk), site_event_hk, site_session_hk, tenant_hk, $4, source
        FROM moved
        ON CONFLICT DO NOTHING
    ), moved_eff AS (
        INSERT INTO business.site_event_session_eff_s (site_event_hk, load_date, link_event_session_hk,
                                                       site_session_hk, tenant_hk, record_source)
        SELECT site_event_hk, $4, sha256(site_event_hk || site_session_hk), site_session_hk, tenant_hk, source
        FROM moved
        WHERE previous_session_hk IS DISTINCT FROM site_session_hk
    ), touched AS MATERIALIZED (
        -- Every session of the batch's events, and both sides of every move, with its latest summary.
        SELECT t.site_session_hk, t.moved, p.*
        FROM (
            SELECT x.site_session_hk, bool_or(x.moved) AS moved
            FROM (SELECT s.site_session_hk, false AS moved FROM staging.site_tracking_events_s s
                  WHERE s.raw_event_id = ANY ($1) AND s.validation_status <> 'INVALID'
                  UNION ALL
                  SELECT m.site_session_hk, true FROM moved m
                  UNION ALL
                  SELECT m.previous_session_hk, true FROM moved m WHERE m.previous_session_hk IS NOT NULL) x
            GROUP BY x.site_session_hk
        ) t
        LEFT JOIN LATERAL (SELECT x.tenant_hk AS p_tenant_hk, x.hash_diff AS p_hash_diff, x.in_force AS p_in_force,
                                  x.session_start AS p_start, x.session_end AS p_end, x.page_views AS p_page_views,
                                  x.event_count AS p_event_count, x.entry_page AS p_entry_page,
                                  x.exit_page AS p_exit_page, x.is_bot AS p_is_bot,
                                  ARRAY[ARRAY[x.referrer_host, x.referrer_class, x.utm_source, x.utm_medium,
                                              x.utm_campaign, x.utm_term, x.utm_content, x.record_source]]
                                      AS p_first
                           FROM business.site_session_summary_s x
                           WHERE x.site_session_hk = t.site_session_hk
                           ORDER BY x.load_date DESC LIMIT 1) p ON true
    ), arrived AS (
        -- The events this batch added, per session: staged by this transaction (stage_events marks a
        -- loadable row loaded as it stages it, at or after the transaction's start).
        SELECT s.site_session_hk, min(s.tenant_hk) AS tenant_hk,
               min(s.occurred_at) AS first_at, max(s.occurred_at) AS last_at,
               count(*) FILTER (WHERE s.event_type = 'page_view')::integer AS page_views,
               count(*)::integer AS event_count,
               (array_agg(s.page_url ORDER BY s.occurred_at, s.site_event_hk)
                    FILTER (WHERE s.page_url IS NOT NULL))[1] AS entry_page,
               (array_agg(s.page_url ORDER BY s.occurred_at DESC, s.site_event_hk DESC)
                    FILTER (WHERE s.page_url IS NOT NULL))[1] AS exit_page,
               bool_or(s.is_bot) AS is_bot,
               (array_agg(ARRAY[s.referrer_host, s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign,
                                s.utm_term, s.utm_content, substr(s.record_source, 9)]
                          ORDER BY s.occurred_at, s.site_event_hk))[1:1] AS first_event,
               (array_agg(s.site_visitor_hk ORDER BY s.occurred_at DESC, s.site_event_hk DESC))[1] AS visitor_hk,
               array_agg(s.site_event_hk) AS gained
        FROM staging.site_tracking_events_s s
        WHERE s.raw_event_id = ANY ($1) AND s.validation_status <> 'INVALID' AND s.business_loaded_at >= now()
        GROUP BY s.site_session_hk
    ), appended AS MATERIALIZED (
        -- Sessions the batch starts (no summary yet, no moves) are the batch's events; sessions it
        -- only extends (its events all after everything the summary counted, which holds every
        -- committed event of the session: the lane is held) are the summary plus the batch; the
        -- others are recomputed from all their events.
        SELECT t.site_session_hk, a.tenant_hk, true AS in_force, coalesce(t.p_start, a.first_at) AS session_start,
               a.last_at AS session_end, coalesce(t.p_page_views, 0) + a.page_views AS page_views,
               coalesce(t.p_event_count, 0) + a.event_count AS event_count,
               coalesce(t.p_entry_page, a.entry_page) AS entry_page, coalesce(a.exit_page, t.p_exit_page) AS exit_page,
               coalesce(t.p_is_bot, false) OR a.is_bot AS is_bot, coalesce(t.p_first, a.first_event) AS first_event,
               a.visitor_hk, a.last_at AS visitor_at, t.p_hash_diff
        FROM touched t JOIN arrived a USING (site_session_hk)
        WHERE NOT $3 AND NOT t.moved
          AND (t.p_hash_diff IS NULL OR (t.p_in_force AND a.first_at > t.p_end))
    ), recomputed AS (
        SELECT t.site_session_hk, a.tenant_hk, true AS in_force, a.session_start, a.session_end, a.page_views,
               a.event_count, a.entry_page, a.exit_page, a.is_bot, a.first_event, a.visitor_hk, a.visitor_at,
               t.p_hash_diff
        FROM touched t
        CROSS JOIN LATERAL (
            SELECT min(s.tenant_hk) AS tenant_hk, min(s.occurred_at) AS session_start,
                   max(s.occurred_at) AS session_end,
                   count(*) FILTER (WHERE s.event_type = 'page_view')::integer AS page_views,
                   count(*)::integer AS event_count,
                   (array_agg(s.page_url ORDER BY s.occurred_at, s.site_event_hk)
                        FILTER (WHERE s.page_url IS NOT NULL))[1] AS entry_page,
                   (array_agg(s.page_url ORDER BY s.occurred_at DESC, s.site_event_hk DESC)
                        FILTER (WHERE s.page_url IS NOT NULL))[1] AS exit_page,
                   bool_or(s.is_bot) AS is_bot,
                   (array_agg(ARRAY[s.referrer_host, s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign,
                                    s.utm_term, s.utm_content, substr(s.record_source, 9)]
                              ORDER BY s.occurred_at, s.site_event_hk))[1:1] AS first_event,
                   (array_agg(s.site_visitor_hk ORDER BY s.occurred_at DESC, s.site_event_hk DESC))[1]
                       AS visitor_hk,
                   max(s.occurred_at) AS visitor_at
            FROM staging.site_tracking_events_s s
            WHERE s.site_session_hk = t.site_session_hk AND s.validation_status <> 'INVALID'
        ) a
        WHERE a.event_count > 0 AND t.site_session_hk NOT IN (SELECT p.site_session_hk FROM appended p)
    ), aggregated AS (
        SELECT * FROM appended
        UNION ALL
        SELECT * FROM recomputed
        UNION ALL
        -- A session left without events (they moved into another) keeps its last content, no
        -- longer in force.
        SELECT t.site_session_hk, t.p_tenant_hk, false, t.p_start, t.p_end, t.p_page_views, t.p_event_count,
               t.p_entry_page, t.p_exit_page, t.p_is_bot, t.p_first, NULL, NULL, t.p_hash_diff
        FROM touched t
        WHERE t.p_in_force AND t.moved
          AND NOT EXISTS (SELECT 1 FROM staging.site_tracking_events_s s
                          WHERE s.site_session_hk = t.site_session_hk AND s.validation_status <> 'INVALID')
    ), summaries AS (
        SELECT c.*,
               util.hash_diff(util.iso_utc(c.session_start), util.iso_utc(c.session_end), c.page_views::text,
                              c.event_count::text, c.entry_page, c.exit_page, c.is_bot::text, c.first_event[1][1],
                              c.first_event[1][2], c.first_event[1][3], c.first_event[1][4], c.first_event[1][5],
                              c.first_event[1][6], c.first_event[1][7], c.in_force::text) AS hash_diff
        FROM aggregated c
    ), summary_s AS (
        INSERT INTO business.site_session_summary_s (
            site_session_hk, load_date, hash_diff, tenant_hk, session_start, session_end, page_views, event_count,
            duration_seconds, entry_page, exit_page, is_bounce, is_bot, referrer_host, referrer_class, utm_source,
            utm_medium, utm_campaign, utm_term, utm_content, record_source, in_force)
        SELECT n.site_session_hk, $4, n.hash_diff, n.tenant_hk, n.session_start, n.session_end, n.page_views,
               n.event_count, extract(epoch FROM n.session_end - n.session_start)::integer, n.entry_page,
               n.exit_page, n.page_views <= 1, n.is_bot, n.first_event[1][1], n.first_event[1][2],
               n.first_event[1][3], n.first_event[1][4], n.first_event[1][5], n.first_event[1][6],
               n.first_event[1][7], n.first_event[1][8], n.in_force
        FROM summaries n
        WHERE n.hash_diff IS DISTINCT FROM n.p_hash_diff
    ), holders AS (
        -- A session belongs to the visitor of its latest event: its latest effectivity row says
        -- which, or its only link when it has no row (a session seen with one visitor).
        SELECT a.site_session_hk, a.tenant_hk, a.visitor_hk, a.visitor_at, a.first_event[1][8] AS source
        FROM aggregated a
        WHERE a.in_force
          AND a.visitor_hk IS DISTINCT FROM coalesce(
              (SELECT e.site_visitor_hk FROM business.site_session_visitor_eff_s e
               WHERE e.site_session_hk = a.site_session_hk ORDER BY e.load_date DESC LIMIT 1),
              (SELECT CASE WHEN count(*) = 1 THEN (array_agg(l.site_visitor_hk))[1] END
               FROM (SELECT l.site_visitor_hk FROM business.site_session_visitor_l l
                     WHERE l.site_session_hk = a.site_session_hk LIMIT 2) l))
    ), state AS (
        -- The current summary and holder of each session in force (business.site_session_current).
        INSERT INTO business.site_session_state AS x (
            site_session_hk, tenant_hk, site_visitor_hk, load_date, session_start, session_end, page_views,
            event_count, duration_seconds, entry_page, exit_page, is_bounce, is_bot, referrer_host, referrer_class,
            utm_source, utm_medium, utm_campaign, utm_term, utm_content, record_source)
        SELECT n.site_session_hk, n.tenant_hk, n.visitor_hk, $4, n.session_start, n.session_end, n.page_views,
               n.event_count, extract(epoch FROM n.session_end - n.session_start)::integer, n.entry_page,
               n.exit_page, n.page_views <= 1, n.is_bot, n.first_event[1][1], n.first_event[1][2],
               n.first_event[1][3], n.first_event[1][4], n.first_event[1][5], n.first_event[1][6],
               n.first_event[1][7], n.first_event[1][8]
        FROM summaries n
        WHERE n.in_force
          AND (n.hash_diff IS DISTINCT FROM n.p_hash_diff
               OR n.site_session_hk IN (SELECT h.site_session_hk FROM holders h))
        ON CONFLICT (site_session_hk) DO UPDATE
        SET site_visitor_hk = EXCLUDED.site_visitor_hk, load_date = EXCLUDED.load_date,
            session_start = EXCLUDED.session_start, session_end = EXCLUDED.session_end,
            page_views = EXCLUDED.page_views, event_count = EXCLUDED.event_count,
            duration_seconds = EXCLUDED.duration_seconds, entry_page = EXCLUDED.entry_page,
            exit_page = EXCLUDED.exit_page, is_bounce = EXCLUDED.is_bounce, is_bot = EXCLUDED.is_bot,
            referrer_host = EXCLUDED.referrer_host, referrer_class = EXCLUDED.referrer_class,
            utm_source = EXCLUDED.utm_source, utm_medium = EXCLUDED.utm_medium,
            utm_campaign = EXCLUDED.utm_campaign, utm_term = EXCLUDED.utm_term, utm_content = EXCLUDED.utm_content,
            record_source = EXCLUDED.record_source
    ), retired AS (
        DELETE FROM business.site_session_state x USING summaries n
        WHERE x.site_session_hk = n.site_session_hk AND NOT n.in_force
    ), holder_l AS (
        INSERT INTO business.site_session_visitor_l (link_session_visitor_hk, site_session_hk, site_visitor_hk,
                                                     tenant_hk, load_date, record_source)
        SELECT sha256(site_session_hk || visitor_hk), site_session_hk, visitor_hk, tenant_hk, $4, source
        FROM holders
        ON CONFLICT DO NOTHING
    ), pending AS (
        -- The information marts follow: mart.refresh_queued (staging.process_batch) refreshes them.
        -- A session that only gained events is queued with them (the marts add them); one that
        -- lost or exchanged events, or a replay's, is queued whole.
        INSERT INTO mart.session_queue (site_session_hk, tenant_hk, site_event_hks)
        SELECT h.site_session_hk, h.tenant_hk, CASE WHEN NOT t.moved AND NOT $3 THEN a.gained END
        FROM touched t
        JOIN business.site_session_h h USING (site_session_hk)
        LEFT JOIN arrived a USING (site_session_hk)
        WHERE t.moved OR $3 OR a.gained IS NOT NULL
    )
    INSERT INTO business.site_session_visitor_eff_s (site_session_hk, load_date, applied_date,
                                                     link_session_visitor_hk, site_visitor_hk, tenant_hk,
                                                     record_source)
    SELECT site_session_hk, $4, visitor_at, sha256(site_session_hk || visitor_hk), visitor_hk, tenant_hk, source
    FROM holders
    $sessions$ USING p_raw_ids, p_moved, p_replay, v_load;

    RETURN v_loaded;
END;
$$;
