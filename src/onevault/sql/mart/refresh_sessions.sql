-- Brings the marts up to date with the given sessions as the business vault holds them now
-- (docs/analytics.md): their facts are recomputed from the vault and the rollups change by the
-- difference. Distinct visitors depend on all of a visitor's days, so the visitor days of every
-- visitor that held one of the sessions, before or now, are recomputed from its facts.
-- Rollup rows a change leaves at zero stay until `onevault mart rebuild` (queries skip them).
-- The customer's mart lock serialises refreshes of one customer (the pipeline's lanes run in
-- parallel); it is taken before the statement that reads, so that it sees the previous
-- holder's commit. The caller owns the transaction.
-- requires: mart/page_path.sql
-- requires: mart/tenant_zone.sql
CREATE OR REPLACE FUNCTION mart.refresh_sessions(p_sessions bytea[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(p_sessions), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7072, hashtext(encode(t.tenant_hk, 'hex')))
    FROM (SELECT DISTINCT h.tenant_hk FROM business.site_session_h h
          WHERE h.site_session_hk = ANY (p_sessions) ORDER BY 1) t;

    -- Planned for each call's values (a generic plan would not read the sessions by key).
    EXECUTE $refresh$
    WITH zones AS MATERIALIZED (
        SELECT t.tenant_hk, mart.tenant_zone(t.tenant_hk) AS zone
        FROM (SELECT DISTINCT h.tenant_hk FROM business.site_session_h h WHERE h.site_session_hk = ANY ($1)) t
    ), new_s AS MATERIALIZED (
        -- Sessions in force that are not a bot's, with their holder's browser, OS and device as of
        -- the session's last event.
        SELECT st.site_session_hk, st.tenant_hk, st.site_visitor_hk, st.session_start AS started_at,
               st.session_end AS ended_at, date_trunc('hour', st.session_start AT TIME ZONE z.zone) AS start_hour,
               st.page_views AS pageviews, st.event_count AS events, st.duration_seconds, st.is_bounce,
               mart.page_path(st.entry_page) AS entry_page, mart.page_path(st.exit_page) AS exit_page,
               coalesce(st.referrer_host, '') AS referrer, coalesce(st.referrer_class, '') AS channel,
               coalesce(st.utm_source, '') AS utm_source, coalesce(st.utm_medium, '') AS utm_medium,
               coalesce(st.utm_campaign, '') AS utm_campaign, coalesce(v.browser_family, '') AS browser,
               coalesce(v.os_family, '') AS os, coalesce(v.device_type, '') AS device
        FROM business.site_session_state st
        JOIN zones z ON z.tenant_hk = st.tenant_hk
        LEFT JOIN LATERAL (
            SELECT d.browser_family, d.os_family, d.device_type, d.is_bot
            FROM business.site_visitor_details_s d
            WHERE d.site_visitor_hk = st.site_visitor_hk AND d.applied_date <= st.session_end
            ORDER BY d.applied_date DESC, d.load_date DESC LIMIT 1
        ) v ON true
        WHERE st.site_session_hk = ANY ($1) AND NOT st.is_bot AND st.site_visitor_hk IS NOT NULL
          AND v.is_bot IS NOT TRUE
    ), new_e AS MATERIALIZED (
        -- Their events in force (an event's session: its latest effectivity row, else its link).
        SELECT n.site_session_hk, date_trunc('hour', d.occurred_at AT TIME ZONE z.zone) AS hour,
               mart.page_path(d.page_url) AS page, d.event_type, n.tenant_hk,
               count(*)::integer AS events, count(*) FILTER (WHERE d.event_type = 'page_view')::integer AS pageviews
        FROM new_s n
        JOIN zones z ON z.tenant_hk = n.tenant_hk
        JOIN business.site_event_session_l l ON l.site_session_hk = n.site_session_hk
        CROSS JOIN LATERAL (
            SELECT x.occurred_at, x.page_url, x.event_type FROM business.site_event_details_s x
            WHERE x.site_event_hk = l.site_event_hk ORDER BY x.load_date DESC LIMIT 1
        ) d
        WHERE coalesce((SELECT e.site_session_hk FROM business.site_event_session_eff_s e
                        WHERE e.site_event_hk = l.site_event_hk ORDER BY e.load_date DESC LIMIT 1),
                       l.site_session_hk) = n.site_session_hk
        GROUP BY 1, 2, 3, 4, 5
    ), old_s AS MATERIALIZED (
        SELECT f.* FROM mart.session_f f WHERE f.site_session_hk = ANY ($1)
    ), old_e AS MATERIALIZED (
        SELECT f.* FROM mart.session_event_f f WHERE f.site_session_hk = ANY ($1)
    ), put_s AS (
        INSERT INTO mart.session_f AS f
        SELECT * FROM new_s
        ON CONFLICT (site_session_hk) DO UPDATE
        SET site_visitor_hk = EXCLUDED.site_visitor_hk, started_at = EXCLUDED.started_at,
            ended_at = EXCLUDED.ended_at, start_hour = EXCLUDED.start_hour, pageviews = EXCLUDED.pageviews,
            events = EXCLUDED.events, duration_seconds = EXCLUDED.duration_seconds, is_bounce = EXCLUDED.is_bounce,
            entry_page = EXCLUDED.entry_page, exit_page = EXCLUDED.exit_page, referrer = EXCLUDED.referrer,
            channel = EXCLUDED.channel, utm_source = EXCLUDED.utm_source, utm_medium = EXCLUDED.utm_medium,
            utm_campaign = EXCLUDED.utm_campaign, browser = EXCLUDED.browser, os = EXCLUDED.os,
            device = EXCLUDED.device
        WHERE (f.*) IS DISTINCT FROM (EXCLUDED.*)
    ), drop_s AS (
        DELETE FROM mart.session_f f
        WHERE f.site_session_hk = ANY ($1) AND f.site_session_hk NOT IN (SELECT n.site_session_hk FROM new_s n)
    ), put_e AS (
        INSERT INTO mart.session_event_f AS f (site_session_hk, hour, page, event_type, tenant_hk, events, pageviews)
        SELECT site_session_hk, hour, page, event_type, tenant_hk, events, pageviews FROM new_e
        ON CONFLICT (site_session_hk, hour, page, event_type) DO UPDATE
        SET events = EXCLUDED.events, pageviews = EXCLUDED.pageviews
        WHERE (f.events, f.pageviews) <> (EXCLUDED.events, EXCLUDED.pageviews)
    ), drop_e AS (
        DELETE FROM mart.session_event_f f
        USING old_e o
        WHERE (f.site_session_hk, f.hour, f.page, f.event_type) = (o.site_session_hk, o.hour, o.page, o.event_type)
          AND NOT EXISTS (SELECT 1 FROM new_e n
                          WHERE (n.site_session_hk, n.hour, n.page, n.event_type)
                                = (o.site_session_hk, o.hour, o.page, o.event_type))
    ), versions AS MATERIALIZED (
        -- Before (-1) and after (+1): the sessions' facts, then every fact of their visitors.
        SELECT -1 AS version, o.* FROM old_s o
        UNION ALL
        SELECT 1, n.* FROM new_s n
    ), visitors AS (
        SELECT DISTINCT v.site_visitor_hk FROM versions v
    ), history_s AS MATERIALIZED (
        SELECT v.* FROM versions v
        UNION ALL
        SELECT k.version, f.*
        FROM mart.session_f f
        CROSS JOIN (VALUES (-1), (1)) k(version)
        WHERE f.site_visitor_hk IN (SELECT site_visitor_hk FROM visitors) AND f.site_session_hk <> ALL ($1)
    ), history_e AS MATERIALIZED (
        SELECT -1 AS version, o.site_session_hk, o.hour, o.page, o.event_type FROM old_e o
        UNION ALL
        SELECT 1, n.site_session_hk, n.hour, n.page, n.event_type FROM new_e n
        UNION ALL
        SELECT k.version, f.site_session_hk, f.hour, f.page, f.event_type
        FROM mart.session_event_f f
        CROSS JOIN (VALUES (-1), (1)) k(version)
        WHERE f.site_session_hk IN (SELECT h.site_session_hk FROM history_s h WHERE h.version = 1)
          AND f.site_session_hk <> ALL ($1)
    ), session_days AS (
        SELECT DISTINCT e.version, e.site_session_hk, e.hour::date AS day FROM history_e e
    ), members AS (
        -- (visitor, dimension, value, day): the visitor was seen that local day with that value.
        SELECT DISTINCT m.version, s.tenant_hk, s.site_visitor_hk, m.dimension, m.value, m.day
        FROM (SELECT e.version, e.site_session_hk, d.dimension, d.value, e.hour::date AS day
              FROM history_e e
              CROSS JOIN LATERAL (VALUES (0::smallint, ''), (1::smallint, e.page), (2::smallint, e.event_type))
                  d(dimension, value)
              UNION ALL
              SELECT sd.version, sd.site_session_hk, d.dimension, d.value, sd.day
              FROM session_days sd
              JOIN history_s s ON s.version = sd.version AND s.site_session_hk = sd.site_session_hk
              CROSS JOIN LATERAL (VALUES (3::smallint, s.entry_page), (4::smallint, s.exit_page),
                                         (5::smallint, s.referrer), (6::smallint, s.channel),
                                         (7::smallint, s.utm_source), (8::smallint, s.utm_medium),
                                         (9::smallint, s.utm_campaign), (10::smallint, s.browser),
                                         (11::smallint, s.os), (12::smallint, s.device)) d(dimension, value)) m
        JOIN history_s s ON s.version = m.version AND s.site_session_hk = m.site_session_hk
    ), visitor_days AS (
        SELECT p.tenant_hk, p.dimension, p.day, p.value, p.prev_day, sum(p.version)::integer AS visitors
        FROM (SELECT m.version, m.tenant_hk, m.dimension, m.day, m.value,
                     coalesce(lag(m.day) OVER (PARTITION BY m.version, m.site_visitor_hk, m.dimension, m.value
                                               ORDER BY m.day), '-infinity') AS prev_day
              FROM members m) p
        GROUP BY 1, 2, 3, 4, 5
        HAVING sum(p.version) <> 0
    ), put_visitor_days AS (
        INSERT INTO mart.visitor_days AS t (tenant_hk, dimension, day, value, prev_day, visitors)
        SELECT * FROM visitor_days
        ON CONFLICT (tenant_hk, dimension, day, value, prev_day) DO UPDATE SET visitors = t.visitors + EXCLUDED.visitors
    ), changed_e AS (
        -- The sessions' event facts before and after, with their session's attributes.
        SELECT -1 AS version, o.hour, o.page, o.event_type, o.events AS hour_events, o.pageviews AS hour_pageviews, s.*
        FROM old_e o JOIN old_s s USING (site_session_hk)
        UNION ALL
        SELECT 1, n.hour, n.page, n.event_type, n.events, n.pageviews, s.*
        FROM new_e n JOIN new_s s USING (site_session_hk)
    ), hourly AS (
        SELECT x.tenant_hk, x.hour, sum(x.visitors)::integer AS visitors, sum(x.visits)::integer AS visits,
               sum(x.bounces)::integer AS bounces, sum(x.duration_seconds)::bigint AS duration_seconds,
               sum(x.visit_pageviews)::integer AS visit_pageviews, sum(x.pageviews)::integer AS pageviews,
               sum(x.events)::integer AS events
        FROM (SELECT s.tenant_hk, s.start_hour AS hour, 0 AS visitors, s.version AS visits,
                     s.version * s.is_bounce::integer AS bounces, s.version * s.duration_seconds AS duration_seconds,
                     s.version * s.pageviews AS visit_pageviews, 0 AS pageviews, 0 AS events
              FROM versions s
              UNION ALL
              SELECT e.tenant_hk, e.hour, 0, 0, 0, 0, 0, e.version * e.hour_pageviews, e.version * e.hour_events
              FROM changed_e e
              UNION ALL
              SELECT h.tenant_hk, h.hour, h.version, 0, 0, 0, 0, 0, 0
              FROM (SELECT DISTINCT e.version, s.tenant_hk, s.site_visitor_hk, e.hour
                    FROM history_e e
                    JOIN history_s s ON s.version = e.version AND s.site_session_hk = e.site_session_hk) h) x
        GROUP BY 1, 2
        HAVING (sum(x.visitors), sum(x.visits), sum(x.bounces), sum(x.duration_seconds), sum(x.visit_pageviews),
                sum(x.pageviews), sum(x.events)) <> (0, 0, 0, 0, 0, 0, 0)
    ), put_hourly AS (
        INSERT INTO mart.traffic_hourly AS t
        SELECT * FROM hourly
        ON CONFLICT (tenant_hk, hour) DO UPDATE
        SET visitors = t.visitors + EXCLUDED.visitors, visits = t.visits + EXCLUDED.visits,
            bounces = t.bounces + EXCLUDED.bounces, duration_seconds = t.duration_seconds + EXCLUDED.duration_seconds,
            visit_pageviews = t.visit_pageviews + EXCLUDED.visit_pageviews, pageviews = t.pageviews + EXCLUDED.pageviews,
            events = t.events + EXCLUDED.events
    ), daily AS (
        SELECT x.tenant_hk, x.dimension, x.day, x.value, sum(x.visits)::integer AS visits,
               sum(x.bounces)::integer AS bounces, sum(x.duration_seconds)::bigint AS duration_seconds,
               sum(x.visit_pageviews)::integer AS visit_pageviews, sum(x.pageviews)::integer AS pageviews,
               sum(x.events)::integer AS events
        FROM (-- Event figures at the event's day, by its page, type and its session's attributes.
              SELECT e.tenant_hk, d.dimension, e.hour::date AS day, d.value, 0 AS visits, 0 AS bounces,
                     0 AS duration_seconds, 0 AS visit_pageviews, e.version * e.hour_pageviews AS pageviews,
                     e.version * e.hour_events AS events
              FROM changed_e e
              CROSS JOIN LATERAL (VALUES (1::smallint, e.page), (2::smallint, e.event_type),
                                         (3::smallint, e.entry_page), (4::smallint, e.exit_page),
                                         (5::smallint, e.referrer), (6::smallint, e.channel),
                                         (7::smallint, e.utm_source), (8::smallint, e.utm_medium),
                                         (9::smallint, e.utm_campaign), (10::smallint, e.browser),
                                         (11::smallint, e.os), (12::smallint, e.device)) d(dimension, value)
              UNION ALL
              -- Visit figures at the session's start day: by its attributes, and by each page and
              -- type it had.
              SELECT s.tenant_hk, d.dimension, s.start_hour::date, d.value, s.version,
                     s.version * s.is_bounce::integer, s.version * s.duration_seconds, s.version * s.pageviews, 0, 0
              FROM versions s
              CROSS JOIN LATERAL (VALUES (3::smallint, s.entry_page), (4::smallint, s.exit_page),
                                         (5::smallint, s.referrer), (6::smallint, s.channel),
                                         (7::smallint, s.utm_source), (8::smallint, s.utm_medium),
                                         (9::smallint, s.utm_campaign), (10::smallint, s.browser),
                                         (11::smallint, s.os), (12::smallint, s.device)) d(dimension, value)
              UNION ALL
              SELECT s.tenant_hk, p.dimension, s.start_hour::date, p.value, s.version,
                     s.version * s.is_bounce::integer, s.version * s.duration_seconds, s.version * s.pageviews, 0, 0
              FROM (SELECT DISTINCT e.version, e.site_session_hk, y.dimension, y.value
                    FROM changed_e e
                    CROSS JOIN LATERAL (VALUES (1::smallint, e.page), (2::smallint, e.event_type)) y(dimension, value)) p
              JOIN versions s ON s.version = p.version AND s.site_session_hk = p.site_session_hk) x
        GROUP BY 1, 2, 3, 4
        HAVING (sum(x.visits), sum(x.bounces), sum(x.duration_seconds), sum(x.visit_pageviews), sum(x.pageviews),
                sum(x.events)) <> (0, 0, 0, 0, 0, 0)
    )
    INSERT INTO mart.traffic_daily AS t
    SELECT * FROM daily
    ON CONFLICT (tenant_hk, dimension, day, value) DO UPDATE
    SET visits = t.visits + EXCLUDED.visits, bounces = t.bounces + EXCLUDED.bounces,
        duration_seconds = t.duration_seconds + EXCLUDED.duration_seconds,
        visit_pageviews = t.visit_pageviews + EXCLUDED.visit_pageviews, pageviews = t.pageviews + EXCLUDED.pageviews,
        events = t.events + EXCLUDED.events
    $refresh$ USING p_sessions;
END;
$$;
