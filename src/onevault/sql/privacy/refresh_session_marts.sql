-- Brings a customer's marts up to date with sessions the business vault deleted or changed
-- (mart.refresh_sessions: the facts of deleted sessions go, the rollups drop by what they counted,
-- visitor days are recomputed), then removes the rollup rows this leaves at zero for the values,
-- local days and hours those sessions were counted in: a refresh after loading leaves such rows to
-- `onevault mart rebuild`, but after a deletion they would keep values only deleted sessions had
-- (a campaign, a page path). The sessions' entries in mart.session_queue are done with.
-- The caller holds the customer's mart lock. Returns how many session facts went.
-- requires: mart/refresh_sessions.sql
CREATE OR REPLACE FUNCTION privacy.refresh_session_marts(p_tenant_hk bytea, p_sessions bytea[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_values jsonb;
    v_days date[];
    v_hours timestamp[];
    v_before integer;
    v_after integer;
BEGIN
    -- What the marts hold of the sessions before: their dimension values, local days and hours.
    SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_array(c.dimension, c.value)), '[]'),
           coalesce(array_agg(DISTINCT c.day), '{}'), coalesce(array_agg(DISTINCT c.hour), '{}')
    INTO v_values, v_days, v_hours
    FROM (SELECT d.dimension, d.value, f.start_hour::date AS day, f.start_hour AS hour
          FROM mart.session_f f
          CROSS JOIN LATERAL (VALUES (0, ''::text), (3, f.entry_page), (4, f.exit_page), (5, f.referrer),
                                     (6, f.channel), (7, f.utm_source), (8, f.utm_medium), (9, f.utm_campaign),
                                     (10, f.browser), (11, f.os), (12, f.device)) d(dimension, value)
          WHERE f.site_session_hk = ANY (p_sessions)
          UNION ALL
          SELECT d.dimension, d.value, e.hour::date, e.hour
          FROM mart.session_event_f e
          CROSS JOIN LATERAL (VALUES (1, e.page), (2, e.event_type)) d(dimension, value)
          WHERE e.site_session_hk = ANY (p_sessions)) c;

    SELECT count(*) INTO v_before FROM mart.session_f f WHERE f.site_session_hk = ANY (p_sessions);
    PERFORM mart.refresh_sessions(p_sessions);
    SELECT count(*) INTO v_after FROM mart.session_f f WHERE f.site_session_hk = ANY (p_sessions);

    DELETE FROM mart.traffic_daily t
    USING (SELECT DISTINCT (c ->> 0)::smallint AS dimension, (c ->> 1) COLLATE "C" AS value
           FROM jsonb_array_elements(v_values) c) c, unnest(v_days) d(day)
    WHERE t.tenant_hk = p_tenant_hk AND t.dimension = c.dimension AND t.day = d.day AND t.value = c.value
      AND (t.visits, t.bounces, t.duration_seconds, t.visit_pageviews, t.pageviews, t.events) = (0, 0, 0, 0, 0, 0);
    DELETE FROM mart.visitor_days t
    USING (SELECT DISTINCT (c ->> 0)::smallint AS dimension, (c ->> 1) COLLATE "C" AS value
           FROM jsonb_array_elements(v_values) c) c, unnest(v_days) d(day)
    WHERE t.tenant_hk = p_tenant_hk AND t.dimension = c.dimension AND t.day = d.day AND t.value = c.value
      AND t.visitors = 0;
    DELETE FROM mart.traffic_hourly t
    WHERE t.tenant_hk = p_tenant_hk AND t.hour = ANY (v_hours)
      AND (t.visitors, t.visits, t.bounces, t.duration_seconds, t.visit_pageviews, t.pageviews, t.events)
          = (0, 0, 0, 0, 0, 0, 0);
    RETURN v_before - v_after;
END;
$$;
