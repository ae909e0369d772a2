-- The second half of staging.load_business (docs/vault.md): the moves stage_events made (an
-- event's link to its new session and an effectivity row), then the summary, state and holder of
-- every session the batch touches, and their entries in mart.session_queue. p_raw_ids, p_moved,
-- p_replay and p_from as in staging.load_business; p_load: the batch's load date.
-- A session is recomputed from its staged events, read between bounds of raw_event_id known when
-- the statement is planned (staging.id_floor and id_ceiling: staging is partitioned by day): the
-- events of the batch's sessions happened from p_from on (staging.stage_events' derived_from). A
-- replay reads all days.
-- Planned for each call's values (plan_cache_mode): a generic plan joins all of staging instead
-- of reading the batch's sessions by index (48 → 16 ms per 1,000 events). A static statement
-- rather than EXECUTE, so that it is parsed and analysed once per session, not once per batch
-- (one-event batches, as POST /api/v1/track runs them: 8.8 → 8.0 ms).
-- requires: util/hash_diff.sql
-- requires: util/iso_utc.sql
-- requires: staging/id_floor.sql
-- requires: staging/id_ceiling.sql
CREATE OR REPLACE FUNCTION staging.load_sessions(
    p_raw_ids bigint[], p_moved bigint[], p_replay boolean, p_from timestamptz, p_load timestamptz
) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_floor bigint := CASE WHEN p_replay THEN 0 ELSE coalesce(staging.id_floor(p_from), 9223372036854775807) END;
    v_ceiling bigint := staging.id_ceiling();
BEGIN
    WITH moved AS MATERIALIZED (
        SELECT s.site_event_hk, s.site_session_hk, s.tenant_hk, substr(s.record_source, 9) AS source,
               coalesce((SELECT e.site_session_hk FROM business.site_event_session_eff_s e
                         WHERE e.site_event_hk = s.site_event_hk ORDER BY e.load_date DESC LIMIT 1),
                        (SELECT l.site_session_hk FROM business.site_event_session_l l
                         WHERE l.site_event_hk = s.site_event_hk ORDER BY l.load_date DESC LIMIT 1))
                   AS previous_session_hk
        FROM staging.site_tracking_events_s s
        -- (An empty array prunes no partition when planned: every day's would be planned.)
        WHERE s.raw_event_id = ANY (p_moved) AND cardinality(p_moved) > 0
    ), moved_l AS (
        INSERT INTO business.site_event_session_l (link_event_session_hk, site_event_hk, site_session_hk,
                                                   tenant_hk, load_date, record_source)
        SELECT sha256(site_event_hk || site_session_hk), site_event_hk, site_session_hk, tenant_hk, p_load, source
        FROM moved
        ON CONFLICT DO NOTHING
    ), moved_eff AS (
        INSERT INTO business.site_event_session_eff_s (site_event_hk, load_date, link_event_session_hk,
                                                       site_session_hk, tenant_hk, record_source)
        SELECT site_event_hk, p_load, sha256(site_event_hk || site_session_hk), site_session_hk, tenant_hk, source
        FROM moved
        WHERE previous_session_hk IS DISTINCT FROM site_session_hk
    ), touched AS MATERIALIZED (
        -- Every session of the batch's events, and both sides of every move, with its latest summary.
        SELECT t.site_session_hk, t.moved, p.*
        FROM (
            SELECT x.site_session_hk, bool_or(x.moved) AS moved
            FROM (SELECT s.site_session_hk, false AS moved FROM staging.site_tracking_events_s s
                  WHERE s.raw_event_id = ANY (p_raw_ids) AND s.validation_status <> 'INVALID'
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
        WHERE s.raw_event_id = ANY (p_raw_ids) AND s.validation_status <> 'INVALID' AND s.business_loaded_at >= now()
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
        WHERE NOT p_replay AND NOT t.moved
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
            WHERE s.site_session_hk = t.site_session_hk
              AND s.raw_event_id >= v_floor AND s.raw_event_id < v_ceiling
              AND s.validation_status <> 'INVALID'
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
                          WHERE s.site_session_hk = t.site_session_hk
              AND s.raw_event_id >= v_floor AND s.raw_event_id < v_ceiling
                            AND s.validation_status <> 'INVALID')
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
        SELECT n.site_session_hk, p_load, n.hash_diff, n.tenant_hk, n.session_start, n.session_end, n.page_views,
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
        SELECT n.site_session_hk, n.tenant_hk, n.visitor_hk, p_load, n.session_start, n.session_end, n.page_views,
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
        SELECT sha256(site_session_hk || visitor_hk), site_session_hk, visitor_hk, tenant_hk, p_load, source
        FROM holders
        ON CONFLICT DO NOTHING
    ), pending AS (
        -- The information marts follow: mart.refresh_queued (staging.process_batch) refreshes them.
        -- A session that only gained events is queued with them (the marts add them); one that
        -- lost or exchanged events, or a replay's, is queued whole.
        INSERT INTO mart.session_queue (site_session_hk, tenant_hk, site_event_hks)
        SELECT h.site_session_hk, h.tenant_hk, CASE WHEN NOT t.moved AND NOT p_replay THEN a.gained END
        FROM touched t
        JOIN business.site_session_h h USING (site_session_hk)
        LEFT JOIN arrived a USING (site_session_hk)
        WHERE t.moved OR p_replay OR a.gained IS NOT NULL
    )
    INSERT INTO business.site_session_visitor_eff_s (site_session_hk, load_date, applied_date,
                                                     link_session_visitor_hk, site_visitor_hk, tenant_hk,
                                                     record_source)
    SELECT site_session_hk, p_load, visitor_at, sha256(site_session_hk || visitor_hk), visitor_hk, tenant_hk, source
    FROM holders;
END;
$$;
