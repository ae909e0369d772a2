-- Brings the marts up to date with the given sessions as the business vault holds them now
-- (docs/analytics.md): their facts are recomputed and the rollups change by the difference.
-- With p_deltas, a session whose entries in mart.session_queue all name events it gained (its
-- other events unchanged, staging.load_business) and which has facts gets those events added to
-- its facts, instead of all of its events read again; any other session is recomputed whole.
-- The sessions' queue entries are taken in the same statement (the same snapshot) as the vault
-- is read: an event counted is never added again, and an event committed later keeps its entry.
-- Distinct visitors depend on all of a visitor's days. For a visitor who came back often,
-- mart.visitor_key_days counts the visitor's sessions seen on each day with each value (see
-- mart.track_visitors): for each day the visitor is seen with a value before or after only, the
-- visitor days change around it, found with the nearest days before and after it (an index probe
-- each, however many sessions the visitor had). Any other visitor's days are recounted from
-- the visitor's other sessions' facts (a few): only a (dimension, value) whose days differ before
-- and after gives visitor days. Likewise hourly visitors, for each (visitor, hour) added or taken
-- away, from the visitor's sessions that ended since a day before that hour (looked up by key).
-- Visitors not in the given sessions keep their figures, and their sessions are not read.
-- A session's browser, OS and device are its holder's current ones: the other sessions of every
-- visitor seen in the given sessions (whose latest event they may hold) whose current ones
-- changed are refreshed too (the visitor's latest other session tells whether they changed).
-- Rollup rows a change leaves at zero stay until `onevault mart rebuild` (queries skip them).
-- The customer's mart lock serialises refreshes of one customer (the pipeline's lanes run in
-- parallel); it is taken before the statements that read, so that they see the previous
-- holder's commit. The caller owns the transaction.
-- requires: mart/page_path.sql
-- requires: mart/tenant_zone.sql
-- requires: mart/track_visitors.sql
CREATE OR REPLACE FUNCTION mart.refresh_facts(p_sessions bytea[], p_deltas boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_sessions bytea[];
    v_visitors bytea[];
BEGIN
    IF coalesce(cardinality(p_sessions), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7072, hashtext(encode(t.tenant_hk, 'hex')))
    FROM (SELECT DISTINCT h.tenant_hk FROM business.site_session_h h
          WHERE h.site_session_hk = ANY (p_sessions) ORDER BY 1) t;

    SELECT p_sessions || coalesce(array_agg(f.site_session_hk), '{}') INTO v_sessions
    FROM (SELECT DISTINCT l.site_visitor_hk FROM business.site_session_visitor_l l
          WHERE l.site_session_hk = ANY (p_sessions)) v
    CROSS JOIN LATERAL (
        SELECT d.browser_family, d.os_family, d.device_type FROM business.site_visitor_details_s d
        WHERE d.site_visitor_hk = v.site_visitor_hk ORDER BY d.applied_date DESC, d.load_date DESC LIMIT 1
    ) d
    -- A visitor's facts all hold the same ones (each refresh keeps them so): the latest tells.
    CROSS JOIN LATERAL (
        SELECT l.browser, l.os, l.device FROM mart.session_f l
        WHERE l.site_visitor_hk = v.site_visitor_hk AND l.site_session_hk <> ALL (p_sessions)
        ORDER BY l.ended_at DESC LIMIT 1
    ) l
    JOIN mart.session_f f ON f.site_visitor_hk = v.site_visitor_hk
    WHERE (l.browser, l.os, l.device)
          IS DISTINCT FROM (coalesce(d.browser_family, ''), coalesce(d.os_family, ''), coalesce(d.device_type, ''))
      AND f.site_session_hk <> ALL (p_sessions)
      AND (f.browser, f.os, f.device)
          IS DISTINCT FROM (coalesce(d.browser_family, ''), coalesce(d.os_family, ''), coalesce(d.device_type, ''));

    -- Planned for each call's values (a generic plan would not read the sessions by key).
    EXECUTE $refresh$
    WITH given AS MATERIALIZED (
        -- The sessions refreshed, to tell them from their visitors' others by hash, not by array scan.
        SELECT DISTINCT x AS site_session_hk FROM unnest($1) x
    ), zones AS MATERIALIZED (
        SELECT t.tenant_hk, mart.tenant_zone(t.tenant_hk) AS zone
        FROM (SELECT DISTINCT h.tenant_hk FROM business.site_session_h h WHERE h.site_session_hk = ANY ($1)) t
    ), new_s AS MATERIALIZED (
        -- Sessions in force that are not a bot's, with their holder's current browser, OS and device.
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
            SELECT d.browser_family, d.os_family, d.device_type
            FROM business.site_visitor_details_s d
            WHERE d.site_visitor_hk = st.site_visitor_hk
            ORDER BY d.applied_date DESC, d.load_date DESC LIMIT 1
        ) v ON true
        WHERE st.site_session_hk = ANY ($1) AND NOT st.is_bot AND st.site_visitor_hk IS NOT NULL
    ), old_s AS MATERIALIZED (
        SELECT f.* FROM mart.session_f f WHERE f.site_session_hk = ANY ($1)
    ), old_e AS MATERIALIZED (
        SELECT f.* FROM mart.session_event_f f WHERE f.site_session_hk = ANY ($1)
    ), taken AS MATERIALIZED (
        DELETE FROM mart.session_queue q WHERE q.site_session_hk = ANY ($1)
        RETURNING q.site_session_hk, q.site_event_hks
    ), grown AS MATERIALIZED (
        -- Sessions that only gained events since their facts were written: those events are added.
        SELECT t.site_session_hk FROM taken t
        WHERE $2 AND t.site_session_hk IN (SELECT o.site_session_hk FROM old_s o)
        GROUP BY t.site_session_hk
        HAVING bool_and(t.site_event_hks IS NOT NULL)
    ), links AS MATERIALIZED (
        -- The events to count: all of a session's, or those a grown session gained.
        SELECT n.site_session_hk, n.tenant_hk, l.site_event_hk
        FROM new_s n
        JOIN business.site_event_session_l l ON l.site_session_hk = n.site_session_hk
        WHERE n.site_session_hk NOT IN (SELECT g.site_session_hk FROM grown g)
        UNION ALL
        SELECT DISTINCT n.site_session_hk, n.tenant_hk, e.site_event_hk
        FROM taken t
        CROSS JOIN LATERAL unnest(t.site_event_hks) e(site_event_hk)
        JOIN grown g ON g.site_session_hk = t.site_session_hk
        JOIN new_s n ON n.site_session_hk = t.site_session_hk
    ), new_e AS MATERIALIZED (
        -- Their events in force (an event's session: its latest effectivity row, else its link),
        -- plus what a grown session's facts counted already.
        SELECT x.site_session_hk, x.hour, x.page, x.event_type, x.tenant_hk, sum(x.events)::integer AS events,
               sum(x.pageviews)::integer AS pageviews
        FROM (
            SELECT l.site_session_hk, date_trunc('hour', d.occurred_at AT TIME ZONE z.zone) AS hour,
                   mart.page_path(d.page_url) AS page, d.event_type, l.tenant_hk, 1 AS events,
                   (d.event_type = 'page_view')::integer AS pageviews
            FROM links l
            JOIN zones z ON z.tenant_hk = l.tenant_hk
            CROSS JOIN LATERAL (
                SELECT x.occurred_at, x.page_url, x.event_type FROM business.site_event_details_s x
                WHERE x.site_event_hk = l.site_event_hk ORDER BY x.load_date DESC LIMIT 1
            ) d
            WHERE coalesce((SELECT e.site_session_hk FROM business.site_event_session_eff_s e
                            WHERE e.site_event_hk = l.site_event_hk ORDER BY e.load_date DESC LIMIT 1),
                           l.site_session_hk) = l.site_session_hk
            UNION ALL
            SELECT o.site_session_hk, o.hour, o.page, o.event_type, o.tenant_hk, o.events, o.pageviews
            FROM old_e o
            WHERE o.site_session_hk IN (SELECT g.site_session_hk FROM grown g)
              AND o.site_session_hk IN (SELECT n.site_session_hk FROM new_s n)
        ) x
        GROUP BY 1, 2, 3, 4, 5
    ), add_s AS (
        -- Sessions without facts get them by plain inserts: the mart lock is held, and old_s and
        -- old_e are all of these sessions' rows, so nothing can conflict.
        INSERT INTO mart.session_f
        SELECT * FROM new_s n WHERE n.site_session_hk NOT IN (SELECT o.site_session_hk FROM old_s o)
    ), put_s AS (
        INSERT INTO mart.session_f AS f
        SELECT * FROM new_s n WHERE n.site_session_hk IN (SELECT o.site_session_hk FROM old_s o)
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
    ), add_e AS (
        -- An event's facts carry the first byte of its session's visitor key: the sample it is in.
        INSERT INTO mart.session_event_f
            (site_session_hk, hour, page, event_type, tenant_hk, visitor_byte, events, pageviews)
        SELECT n.site_session_hk, n.hour, n.page, n.event_type, n.tenant_hk, get_byte(s.site_visitor_hk, 0),
               n.events, n.pageviews
        FROM new_e n
        JOIN new_s s ON s.site_session_hk = n.site_session_hk
        WHERE n.site_session_hk NOT IN (SELECT o.site_session_hk FROM old_e o)
    ), put_e AS (
        INSERT INTO mart.session_event_f AS f
            (site_session_hk, hour, page, event_type, tenant_hk, visitor_byte, events, pageviews)
        SELECT n.site_session_hk, n.hour, n.page, n.event_type, n.tenant_hk, get_byte(s.site_visitor_hk, 0),
               n.events, n.pageviews
        FROM new_e n
        JOIN new_s s ON s.site_session_hk = n.site_session_hk
        WHERE n.site_session_hk IN (SELECT o.site_session_hk FROM old_e o)
        ON CONFLICT (site_session_hk, hour, page, event_type) DO UPDATE
        SET visitor_byte = EXCLUDED.visitor_byte, events = EXCLUDED.events, pageviews = EXCLUDED.pageviews
        WHERE (f.visitor_byte, f.events, f.pageviews) <> (EXCLUDED.visitor_byte, EXCLUDED.events, EXCLUDED.pageviews)
    ), drop_e AS (
        DELETE FROM mart.session_event_f f
        WHERE (f.site_session_hk, f.hour, f.page, f.event_type) IN (
            SELECT o.site_session_hk, o.hour, o.page, o.event_type FROM old_e o
            EXCEPT
            SELECT n.site_session_hk, n.hour, n.page, n.event_type FROM new_e n)
    ), versions AS MATERIALIZED (
        -- The sessions' facts before (-1) and after (+1).
        SELECT -1 AS version, o.site_session_hk, o.tenant_hk, o.site_visitor_hk, o.start_hour, o.pageviews,
               o.duration_seconds, o.is_bounce, o.entry_page, o.exit_page, o.referrer, o.channel, o.utm_source,
               o.utm_medium, o.utm_campaign, o.browser, o.os, o.device
        FROM old_s o
        UNION ALL
        SELECT 1, n.site_session_hk, n.tenant_hk, n.site_visitor_hk, n.start_hour, n.pageviews, n.duration_seconds,
               n.is_bounce, n.entry_page, n.exit_page, n.referrer, n.channel, n.utm_source, n.utm_medium,
               n.utm_campaign, n.browser, n.os, n.device
        FROM new_s n
    ), version_e AS MATERIALIZED (
        -- The sessions' event facts before (-1) and after (+1), with the session's visitor.
        SELECT -1 AS version, o.site_session_hk, o.hour, o.page, o.event_type, o.events, o.pageviews, s.tenant_hk,
               s.site_visitor_hk
        FROM old_e o
        JOIN old_s s ON s.site_session_hk = o.site_session_hk
        UNION ALL
        SELECT 1, n.site_session_hk, n.hour, n.page, n.event_type, n.events, n.pageviews, s.tenant_hk, s.site_visitor_hk
        FROM new_e n
        JOIN new_s s ON s.site_session_hk = n.site_session_hk
    ), page_days AS MATERIALIZED (
        -- Each session version's pages and event types by local day, with their figures.
        SELECT x.version, x.site_session_hk, x.tenant_hk, x.site_visitor_hk, x.hour::date AS day, d.dimension, d.value,
               sum(x.pageviews) AS pageviews, sum(x.events) AS events
        FROM version_e x
        CROSS JOIN LATERAL (VALUES (1::smallint, x.page), (2::smallint, x.event_type)) d(dimension, value)
        GROUP BY 1, 2, 3, 4, 5, 6, 7
    ), cells AS MATERIALIZED (
        -- Every rollup cell each session version adds to: (dimension, value, day) with the
        -- visitor seen there (member), its event figures that day, and its visit figures on the
        -- day it started (the day of its first event).
        SELECT v.version, v.tenant_hk, v.site_visitor_hk, d.dimension, d.value, v.day, true AS member,
               v.first AS visits, v.first * v.is_bounce::integer AS bounces, v.first * v.duration_seconds AS duration,
               v.first * v.pageviews AS visit_pageviews, v.day_pageviews AS pageviews, v.day_events AS events
        FROM (SELECT s.*, e.day, e.day_pageviews, e.day_events, (e.day = s.start_hour::date)::integer AS first
              FROM (SELECT x.version, x.site_session_hk, x.hour::date AS day, sum(x.pageviews) AS day_pageviews,
                           sum(x.events) AS day_events
                    FROM version_e x GROUP BY 1, 2, 3) e
              JOIN versions s ON s.version = e.version AND s.site_session_hk = e.site_session_hk) v
        CROSS JOIN LATERAL (VALUES (0::smallint, ''::text), (3::smallint, v.entry_page), (4::smallint, v.exit_page),
                                   (5::smallint, v.referrer), (6::smallint, v.channel),
                                   (7::smallint, v.utm_source), (8::smallint, v.utm_medium),
                                   (9::smallint, v.utm_campaign), (10::smallint, v.browser),
                                   (11::smallint, v.os), (12::smallint, v.device)) d(dimension, value)
        UNION ALL
        SELECT p.version, p.tenant_hk, p.site_visitor_hk, p.dimension, p.value, p.day, true, 0, 0, 0, 0,
               p.pageviews, p.events
        FROM page_days p
        UNION ALL
        SELECT s.version, s.tenant_hk, s.site_visitor_hk, p.dimension, p.value, s.start_hour::date, false, 1,
               s.is_bounce::integer, s.duration_seconds, s.pageviews, 0, 0
        FROM (SELECT DISTINCT x.version, x.site_session_hk, x.dimension, x.value FROM page_days x) p
        JOIN versions s ON s.version = p.version AND s.site_session_hk = p.site_session_hk
    ), tracked AS MATERIALIZED (
        -- The visitors whose days by value mart.visitor_key_days holds (those who came back often).
        SELECT v.site_visitor_hk
        FROM (SELECT DISTINCT s.site_visitor_hk FROM versions s) v
        WHERE EXISTS (SELECT FROM mart.visitor_key_days m WHERE m.site_visitor_hk = v.site_visitor_hk)
    ), member_days AS MATERIALIZED (
        -- The tracked visitors' days of these sessions' versions, with the number of their sessions
        -- seen there before (mart.visitor_key_days) and after.
        SELECT d.site_visitor_hk, d.dimension, d.value, d.day, d.tenant_hk, d.change,
               coalesce(m.sessions, 0) AS before, coalesce(m.sessions, 0) + d.change AS after
        FROM (SELECT c.site_visitor_hk, c.dimension, c.value, c.day, c.tenant_hk, sum(c.version)::integer AS change
              FROM cells c
              WHERE c.member AND c.site_visitor_hk IN (SELECT t.site_visitor_hk FROM tracked t)
              GROUP BY 1, 2, 3, 4, 5) d
        LEFT JOIN mart.visitor_key_days m
            ON m.site_visitor_hk = d.site_visitor_hk AND m.dimension = d.dimension AND m.value = d.value
           AND m.day = d.day
    ), member_changed AS MATERIALIZED (
        -- The days such a visitor is seen with that value before or after only: the visitor days
        -- that change are theirs and those of the next day seen, which take them as previous day.
        SELECT d.site_visitor_hk, d.dimension, d.value, d.day, d.tenant_hk
        FROM member_days d
        WHERE (d.before > 0) <> (d.after > 0)
    ), neighbours AS MATERIALIZED (
        -- The visitor's nearest days seen with that value before and after each changed day that
        -- these sessions' versions do not have: seen before and after, they hold the previous days
        -- and the next days the changes concern (any day further away keeps its previous day).
        SELECT DISTINCT c.site_visitor_hk, c.dimension, c.value, n.day, c.tenant_hk
        FROM member_changed c
        CROSS JOIN LATERAL (
            (SELECT m.day FROM mart.visitor_key_days m
             WHERE m.site_visitor_hk = c.site_visitor_hk AND m.dimension = c.dimension AND m.value = c.value
               AND m.day < c.day
             ORDER BY m.day DESC LIMIT 1)
            UNION ALL
            (SELECT m.day FROM mart.visitor_key_days m
             WHERE m.site_visitor_hk = c.site_visitor_hk AND m.dimension = c.dimension AND m.value = c.value
               AND m.day > c.day
             ORDER BY m.day LIMIT 1)
        ) n
        WHERE NOT EXISTS (SELECT FROM member_days d
                          WHERE d.site_visitor_hk = c.site_visitor_hk AND d.dimension = c.dimension
                            AND d.value = c.value AND d.day = n.day)
    ), kept AS MATERIALIZED (
        -- The other sessions of the other visitors (a few: mart.track_visitors keeps the days of those
        -- with more), which count before and after.
        SELECT f.site_session_hk, f.site_visitor_hk, f.tenant_hk, f.entry_page, f.exit_page, f.referrer, f.channel,
               f.utm_source, f.utm_medium, f.utm_campaign, f.browser, f.os, f.device
        FROM mart.session_f f
        WHERE f.site_visitor_hk IN (SELECT s.site_visitor_hk FROM versions s
                                    WHERE NOT EXISTS (SELECT FROM tracked t WHERE t.site_visitor_hk = s.site_visitor_hk))
          AND f.site_session_hk NOT IN (SELECT g.site_session_hk FROM given g)
    ), day_flags AS (
        -- Each (visitor, dimension, value, day) the visitor was seen with that local day: before,
        -- after. A visitor whose days are kept: the days of each (dimension, value) with a changed
        -- day, and the neighbours (its other days keep their previous days). Any other visitor: the
        -- days of these sessions' versions and of the visitor's other sessions, which count in both;
        -- a (visitor, dimension, value) these versions do not change has every day seen before and
        -- after with the same previous days, and gives no visitor days below.
        SELECT d.site_visitor_hk, d.dimension, d.value, d.day, d.tenant_hk, d.before > 0 AS seen_before,
               d.after > 0 AS seen_after
        FROM member_days d
        WHERE (d.site_visitor_hk, d.dimension, d.value) IN (SELECT c.site_visitor_hk, c.dimension, c.value
                                                            FROM member_changed c)
        UNION ALL
        SELECT n.site_visitor_hk, n.dimension, n.value, n.day, n.tenant_hk, true, true
        FROM neighbours n
        UNION ALL
        SELECT x.site_visitor_hk, x.dimension, x.value, x.day, x.tenant_hk,
               bool_or(x.seen_before), bool_or(x.seen_after)
        FROM (SELECT c.site_visitor_hk, c.dimension, c.value, c.day, c.tenant_hk, c.version = -1 AS seen_before,
                     c.version = 1 AS seen_after
              FROM cells c
              WHERE c.member AND NOT EXISTS (SELECT FROM tracked t WHERE t.site_visitor_hk = c.site_visitor_hk)
              UNION ALL
              SELECT k.site_visitor_hk, k.dimension, k.value, k.day, k.tenant_hk, true, true
              FROM (SELECT f.site_visitor_hk, d.dimension, d.value, e.day, f.tenant_hk
                    FROM kept f
                    JOIN (SELECT DISTINCT e.site_session_hk, e.hour::date AS day
                          FROM mart.session_event_f e
                          WHERE e.site_session_hk IN (SELECT k.site_session_hk FROM kept k)) e
                        ON e.site_session_hk = f.site_session_hk
                    CROSS JOIN LATERAL (VALUES (0::smallint, ''::text), (3::smallint, f.entry_page), (4::smallint, f.exit_page),
                                               (5::smallint, f.referrer), (6::smallint, f.channel),
                                               (7::smallint, f.utm_source), (8::smallint, f.utm_medium),
                                               (9::smallint, f.utm_campaign), (10::smallint, f.browser),
                                               (11::smallint, f.os), (12::smallint, f.device)) d(dimension, value)
                    UNION ALL
                    SELECT f.site_visitor_hk, d.dimension, d.value, e.hour::date, f.tenant_hk
                    FROM kept f
                    JOIN mart.session_event_f e ON e.site_session_hk = f.site_session_hk
                    CROSS JOIN LATERAL (VALUES (1::smallint, e.page), (2::smallint, e.event_type)) d(dimension, value)) k) x
        GROUP BY 1, 2, 3, 4, 5
    ), visitor_days AS (
        -- The visitor days before (-1) and after (+1), each day with the previous one of its
        -- (visitor, dimension, value): one pass in day order. Days seen before and after with the
        -- same previous day cancel out.
        SELECT p.tenant_hk, p.dimension, p.day, p.value, p.prev_day, sum(p.version)::integer AS visitors
        FROM (SELECT g.tenant_hk, g.dimension, g.value, g.day, v.version,
                     coalesce(CASE v.version WHEN -1 THEN g.prev_before ELSE g.prev_after END, '-infinity') AS prev_day
              FROM (SELECT f.*,
                           max(f.day) FILTER (WHERE f.seen_before) OVER w AS prev_before,
                           max(f.day) FILTER (WHERE f.seen_after) OVER w AS prev_after
                    FROM day_flags f
                    WINDOW w AS (PARTITION BY f.site_visitor_hk, f.dimension, f.value ORDER BY f.day
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) g
              CROSS JOIN LATERAL (SELECT -1 AS version WHERE g.seen_before
                                  UNION ALL
                                  SELECT 1 WHERE g.seen_after) v
              WHERE g.seen_before <> g.seen_after OR g.prev_before IS DISTINCT FROM g.prev_after) p
        GROUP BY 1, 2, 3, 4, 5
        HAVING sum(p.version) <> 0
    ), put_visitor_days AS (
        INSERT INTO mart.visitor_days AS t (tenant_hk, dimension, day, value, prev_day, visitors)
        SELECT * FROM visitor_days
        ON CONFLICT (tenant_hk, dimension, day, value, prev_day) DO UPDATE SET visitors = t.visitors + EXCLUDED.visitors
    ), put_members AS (
        INSERT INTO mart.visitor_key_days AS m (site_visitor_hk, dimension, value, day, sessions)
        SELECT d.site_visitor_hk, d.dimension, d.value, d.day, d.after
        FROM member_days d
        WHERE d.change <> 0 AND d.after > 0
        ON CONFLICT (site_visitor_hk, dimension, value, day) DO UPDATE SET sessions = EXCLUDED.sessions
    ), drop_members AS (
        DELETE FROM mart.visitor_key_days m
        USING member_days d
        WHERE d.after = 0 AND d.before > 0 AND m.site_visitor_hk = d.site_visitor_hk
          AND m.dimension = d.dimension AND m.value = d.value AND m.day = d.day
    ), hour_changes AS MATERIALIZED (
        -- The (visitor, hour) these sessions' versions add or take away.
        SELECT h.tenant_hk, h.site_visitor_hk, h.hour, sum(h.version) AS change
        FROM (SELECT DISTINCT e.version, e.tenant_hk, e.site_visitor_hk, e.hour FROM version_e e) h
        GROUP BY 1, 2, 3
        HAVING sum(h.version) <> 0
    ), hour_visitors AS (
        -- A visitor counts in an hour once: a change of presence here matters unless another of
        -- the visitor's sessions has events in that hour (looked up for each change by key).
        -- Sessions with events in a local hour end after it starts: read as UTC less a day, the hour
        -- bounds that moment in any time zone (a deleted session's customer may have none left in
        -- zones), and the session's hours decide.
        SELECT c.tenant_hk, c.hour, c.change
        FROM hour_changes c
        LEFT JOIN LATERAL (
            SELECT true AS kept
            FROM mart.session_f f
            JOIN mart.session_event_f e ON e.site_session_hk = f.site_session_hk AND e.hour = c.hour
            WHERE f.site_visitor_hk = c.site_visitor_hk
              AND f.ended_at >= (c.hour AT TIME ZONE 'UTC') - interval '1 day'
              AND f.site_session_hk NOT IN (SELECT g.site_session_hk FROM given g)
            LIMIT 1
        ) k ON true
        WHERE k.kept IS NULL
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
              SELECT e.tenant_hk, e.hour, 0, 0, 0, 0, 0, e.version * e.pageviews, e.version * e.events
              FROM version_e e
              UNION ALL
              SELECT h.tenant_hk, h.hour, h.change, 0, 0, 0, 0, 0, 0
              FROM hour_visitors h) x
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
        SELECT c.tenant_hk, c.dimension, c.day, c.value, sum(c.version * c.visits)::integer AS visits,
               sum(c.version * c.bounces)::integer AS bounces, sum(c.version * c.duration)::bigint AS duration_seconds,
               sum(c.version * c.visit_pageviews)::integer AS visit_pageviews,
               sum(c.version * c.pageviews)::integer AS pageviews, sum(c.version * c.events)::integer AS events
        FROM cells c
        WHERE c.dimension > 0
        GROUP BY 1, 2, 3, 4
        HAVING (sum(c.version * c.visits), sum(c.version * c.bounces), sum(c.version * c.duration),
                sum(c.version * c.visit_pageviews), sum(c.version * c.pageviews), sum(c.version * c.events))
               <> (0, 0, 0, 0, 0, 0)
    ), put_daily AS (
        INSERT INTO mart.traffic_daily AS t
        SELECT * FROM daily
        ON CONFLICT (tenant_hk, dimension, day, value) DO UPDATE
        SET visits = t.visits + EXCLUDED.visits, bounces = t.bounces + EXCLUDED.bounces,
            duration_seconds = t.duration_seconds + EXCLUDED.duration_seconds,
            visit_pageviews = t.visit_pageviews + EXCLUDED.visit_pageviews, pageviews = t.pageviews + EXCLUDED.pageviews,
            events = t.events + EXCLUDED.events
    )
    -- The visitors whose days are not kept and who have sixteen sessions with facts now, counted among
    -- the other sessions read above and these sessions: their days are kept from now on.
    SELECT coalesce(array_agg(x.site_visitor_hk), '{}')
    FROM (SELECT y.site_visitor_hk
          FROM (SELECT k.site_visitor_hk FROM kept k
                UNION ALL
                SELECT n.site_visitor_hk FROM new_s n
                WHERE NOT EXISTS (SELECT FROM tracked t WHERE t.site_visitor_hk = n.site_visitor_hk)) y
          GROUP BY 1
          HAVING count(*) >= 16) x
    $refresh$ INTO v_visitors USING v_sessions, p_deltas;

    PERFORM mart.track_visitors(v_visitors);
END;
$$;
