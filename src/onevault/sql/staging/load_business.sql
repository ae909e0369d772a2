-- staging → business: hubs, links and satellites of the given events' loadable (VALID or
-- SUSPICIOUS) staging rows, and the derived data they touch, recomputed from all the events it
-- depends on (docs/vault.md). p_moved: staged events stage_events moved to another derived
-- session. p_replay: the events were loaded before (staging.rebuild_vault), so their links are
-- written where missing too. p_from: the earliest time a staged event of the batch's sessions
-- can have happened (stage_events' derived_from; by default any). Idempotent: a replay
-- inserts nothing. Returns the events it added.
-- The sessions it touches wait in mart.session_queue for their information marts, with the
-- events they gained.
-- The caller holds the lanes of the events (staging.process_batch), so no other run touches their
-- sessions. Visitors and pages, which runs of different lanes may share, need no lock: their
-- current details are the latest event's, which the run that loads it always writes. One load
-- date for the whole batch.
-- requires: util/hash_diff.sql
-- requires: util/iso_utc.sql
-- requires: staging/load_sessions.sql
-- requires: staging/events_by_id.sql
CREATE OR REPLACE FUNCTION staging.load_business(
    p_raw_ids bigint[], p_moved bigint[] DEFAULT '{}', p_replay boolean DEFAULT false,
    p_from timestamptz DEFAULT '-infinity'
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
        FROM staging.events_by_id(p_raw_ids) s
        WHERE s.validation_status <> 'INVALID'
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
    -- the batch touches (staging.load_sessions: a new statement, which sees the rows written above).
    PERFORM staging.load_sessions(p_raw_ids, p_moved, p_replay, p_from, v_load);

    RETURN v_loaded;
END;
$$;
