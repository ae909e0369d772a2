-- Starts keeping the days by value (mart.visitor_key_days) of the given visitors — those who came
-- back often: mart.refresh_facts names those it finds with sixteen sessions with facts — whose days
-- are not kept yet, from their facts. Counting such a visitor's next session then finds the
-- visitor days it moves by key instead of reading all of the visitor's other sessions, whose
-- number only grows; visitors seen a few times are counted from their few other sessions and cost
-- no rows here. Once there, a visitor's rows are kept by every refresh and go with their last
-- session. The caller holds the customer's mart lock.
CREATE OR REPLACE FUNCTION mart.track_visitors(p_visitors bytea[]) RETURNS void
LANGUAGE sql AS $$
    WITH visitors AS MATERIALIZED (
        SELECT DISTINCT v.site_visitor_hk
        FROM unnest(p_visitors) v(site_visitor_hk)
        WHERE NOT EXISTS (SELECT FROM mart.visitor_key_days m WHERE m.site_visitor_hk = v.site_visitor_hk)
    ), sessions AS MATERIALIZED (
        SELECT f.site_session_hk, f.site_visitor_hk, f.entry_page, f.exit_page, f.referrer, f.channel,
               f.utm_source, f.utm_medium, f.utm_campaign, f.browser, f.os, f.device
        FROM mart.session_f f
        WHERE f.site_visitor_hk IN (SELECT v.site_visitor_hk FROM visitors v)
    )
    -- A session is seen with its visit attributes on every local day it has events, and with an
    -- event's page and type on the days of those events (as the refresh's cells).
    INSERT INTO mart.visitor_key_days (site_visitor_hk, dimension, value, day, sessions)
    SELECT k.site_visitor_hk, k.dimension, k.value, k.day, count(*)
    FROM (SELECT f.site_visitor_hk, d.dimension, d.value, e.day
          FROM sessions f
          JOIN (SELECT DISTINCT x.site_session_hk, x.hour::date AS day FROM mart.session_event_f x
                WHERE x.site_session_hk IN (SELECT s.site_session_hk FROM sessions s)) e
              ON e.site_session_hk = f.site_session_hk
          CROSS JOIN LATERAL (VALUES (0::smallint, ''::text), (3::smallint, f.entry_page), (4::smallint, f.exit_page),
                                     (5::smallint, f.referrer), (6::smallint, f.channel), (7::smallint, f.utm_source),
                                     (8::smallint, f.utm_medium), (9::smallint, f.utm_campaign),
                                     (10::smallint, f.browser), (11::smallint, f.os),
                                     (12::smallint, f.device)) d(dimension, value)
          UNION ALL
          SELECT p.site_visitor_hk, p.dimension, p.value, p.day
          FROM (SELECT DISTINCT f.site_session_hk, f.site_visitor_hk, d.dimension, d.value, e.hour::date AS day
                FROM sessions f
                JOIN mart.session_event_f e ON e.site_session_hk = f.site_session_hk
                CROSS JOIN LATERAL (VALUES (1::smallint, e.page), (2::smallint, e.event_type)) d(dimension, value)) p) k
    GROUP BY 1, 2, 3, 4;
$$;
