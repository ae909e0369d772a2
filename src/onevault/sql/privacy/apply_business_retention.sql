-- Retention of the business layer (`onevault tenant set-retention CUSTOMER_ID --business-days N`;
-- docs/privacy.md): for every customer with a retention, deletes the sessions that ended more than
-- N days before p_now, whole — a session still going on at the cutoff stays until it has ended
-- N days ago — with everything the business vault holds of them: their hubs, summaries, state,
-- visitor links and effectivity rows, and the sessions out of force their events were in before
-- (merged into them); their events' hubs, details, session and page links and effectivity rows;
-- the visitors and pages left without any event (hubs, details). The marts follow in the same
-- transaction (privacy.refresh_session_marts). Raw and staging keep their rows: they have their
-- own retention; so do the pipeline's counters, which count its work.
-- At most p_limit sessions per call, oldest first within a customer, customers in key order: the
-- caller repeats it, a transaction per call, while "more" is true. Holds each customer's lanes and
-- then its mart lock (as privacy.erase_visitor), so no pipeline run loads or counts its sessions
-- meanwhile; customers with nothing expired are not locked.
-- Returns {"tenants": customers with sessions deleted, "sessions": sessions in force deleted,
-- "events": events deleted, "more": whether expired sessions are left}.
-- requires: privacy/refresh_session_marts.sql
CREATE OR REPLACE FUNCTION privacy.apply_business_retention(
    p_now timestamptz DEFAULT now(), p_limit integer DEFAULT 5000
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_ghost CONSTANT bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    v_tenant record;
    v_left integer := p_limit;
    v_tenants integer := 0;
    v_deleted_sessions integer := 0;
    v_deleted_events integer := 0;
    v_more boolean := false;
    v_sessions bytea[];
    v_events bytea[];
    v_gone bytea[];
    v_visitors bytea[];
    v_pages bytea[];
    v_n integer;
BEGIN
    IF p_now IS NULL OR coalesce(p_limit, 0) < 1 THEN
        RAISE EXCEPTION 'privacy.apply_business_retention needs a time and a limit of at least 1 session'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Days of 24 hours: the cutoff does not depend on the session's TimeZone (its DST changes).
    FOR v_tenant IN
        SELECT r.tenant_hk, p_now - make_interval(hours => 24 * r.business_days) AS cutoff
        FROM (SELECT DISTINCT ON (x.tenant_hk) x.tenant_hk, x.business_days FROM auth.tenant_retention_s x
              ORDER BY x.tenant_hk, x.load_date DESC) r
        WHERE r.business_days IS NOT NULL
        ORDER BY r.tenant_hk
    LOOP
        -- Customers with nothing expired are not locked: their runs go on.
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM business.site_session_state st
                                  WHERE st.tenant_hk = v_tenant.tenant_hk AND st.session_start < v_tenant.cutoff
                                    AND st.session_end < v_tenant.cutoff);
        IF v_left = 0 THEN
            v_more := true;
            EXIT;
        END IF;

        -- The customer's lanes, in the order every run takes them, then its marts (as a run does).
        PERFORM pg_advisory_xact_lock(7071, hashtext(encode(v_tenant.tenant_hk, 'hex') || '/' || l))
        FROM generate_series(0, 7) l ORDER BY l;
        PERFORM pg_advisory_xact_lock(7072, hashtext(encode(v_tenant.tenant_hk, 'hex')));

        -- Its expired sessions in force, read under the locks (a run may have extended one), and
        -- one more to know whether some are left.
        SELECT coalesce(array_agg(x.site_session_hk ORDER BY x.session_start, x.site_session_hk), '{}')
        INTO v_sessions
        FROM (SELECT st.site_session_hk, st.session_start FROM business.site_session_state st
              WHERE st.tenant_hk = v_tenant.tenant_hk AND st.session_start < v_tenant.cutoff
                AND st.session_end < v_tenant.cutoff
              ORDER BY st.session_start, st.site_session_hk
              LIMIT v_left + 1) x;
        IF cardinality(v_sessions) > v_left THEN
            v_more := true;
            v_sessions := v_sessions[1:v_left];
        END IF;
        CONTINUE WHEN cardinality(v_sessions) = 0;

        -- Their events (an event's session is its latest effectivity row, else its link).
        SELECT coalesce(array_agg(DISTINCT l.site_event_hk), '{}') INTO v_events
        FROM business.site_event_session_l l
        WHERE l.site_session_hk = ANY (v_sessions)
          AND coalesce((SELECT e.site_session_hk FROM business.site_event_session_eff_s e
                        WHERE e.site_event_hk = l.site_event_hk ORDER BY e.load_date DESC LIMIT 1),
                       l.site_session_hk) IN (SELECT unnest(v_sessions));

        -- With them go the sessions out of force those events were in before, unless another
        -- event was in them too.
        SELECT v_sessions || coalesce(array_agg(DISTINCT l.site_session_hk), '{}') INTO v_gone
        FROM business.site_event_session_l l
        WHERE l.site_event_hk = ANY (v_events) AND l.site_session_hk NOT IN (SELECT unnest(v_sessions))
          AND NOT EXISTS (SELECT 1 FROM business.site_session_state st WHERE st.site_session_hk = l.site_session_hk)
          AND NOT EXISTS (SELECT 1 FROM business.site_event_session_l o
                          WHERE o.site_session_hk = l.site_session_hk
                            AND o.site_event_hk NOT IN (SELECT unnest(v_events)));

        -- The visitors and pages they were seen with, which may be left without any event.
        SELECT coalesce(array_agg(DISTINCT x.hk), '{}') INTO v_visitors
        FROM (SELECT l.site_visitor_hk AS hk FROM business.site_session_visitor_l l
              WHERE l.site_session_hk = ANY (v_gone)
              UNION ALL
              SELECT e.site_visitor_hk FROM business.site_session_visitor_eff_s e
              WHERE e.site_session_hk = ANY (v_gone)) x;
        SELECT coalesce(array_agg(DISTINCT l.site_page_hk), '{}') INTO v_pages
        FROM business.site_event_page_l l WHERE l.site_event_hk = ANY (v_events) AND l.site_page_hk <> v_ghost;

        -- The events. (The effectivity rows of the sessions that go are their events': an event has
        -- rows only for sessions it is linked to.)
        DELETE FROM business.site_event_session_eff_s x WHERE x.site_event_hk = ANY (v_events);
        DELETE FROM business.site_event_session_l x
        WHERE x.site_event_hk = ANY (v_events) OR x.site_session_hk = ANY (v_gone);
        DELETE FROM business.site_event_page_l x WHERE x.site_event_hk = ANY (v_events);
        DELETE FROM business.site_event_details_s x WHERE x.site_event_hk = ANY (v_events);
        DELETE FROM business.site_event_h x
        WHERE x.site_event_hk = ANY (v_events) AND x.tenant_hk = v_tenant.tenant_hk;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_deleted_events := v_deleted_events + v_n;

        -- The sessions.
        DELETE FROM business.site_session_visitor_eff_s x WHERE x.site_session_hk = ANY (v_gone);
        DELETE FROM business.site_session_visitor_l x WHERE x.site_session_hk = ANY (v_gone);
        DELETE FROM business.site_session_summary_s x WHERE x.site_session_hk = ANY (v_gone);
        DELETE FROM business.site_session_state x WHERE x.site_session_hk = ANY (v_gone);
        DELETE FROM business.site_session_h x
        WHERE x.site_session_hk = ANY (v_gone) AND x.tenant_hk = v_tenant.tenant_hk;

        -- Visitors no session links to any more, pages no event links to.
        SELECT coalesce(array_agg(v.hk), '{}') INTO v_visitors
        FROM unnest(v_visitors) v(hk)
        WHERE NOT EXISTS (SELECT 1 FROM business.site_session_visitor_l l WHERE l.site_visitor_hk = v.hk)
          AND NOT EXISTS (SELECT 1 FROM business.site_session_visitor_eff_s e WHERE e.site_visitor_hk = v.hk);
        DELETE FROM business.site_visitor_details_s x WHERE x.site_visitor_hk = ANY (v_visitors);
        DELETE FROM business.site_visitor_h x
        WHERE x.site_visitor_hk = ANY (v_visitors) AND x.tenant_hk = v_tenant.tenant_hk;
        SELECT coalesce(array_agg(p.hk), '{}') INTO v_pages
        FROM unnest(v_pages) p(hk)
        WHERE NOT EXISTS (SELECT 1 FROM business.site_event_page_l l WHERE l.site_page_hk = p.hk);
        DELETE FROM business.site_page_details_s x WHERE x.site_page_hk = ANY (v_pages);
        DELETE FROM business.site_page_h x
        WHERE x.site_page_hk = ANY (v_pages) AND x.tenant_hk = v_tenant.tenant_hk;

        PERFORM privacy.refresh_session_marts(v_tenant.tenant_hk, v_gone);

        v_tenants := v_tenants + 1;
        v_deleted_sessions := v_deleted_sessions + cardinality(v_sessions);
        v_left := v_left - cardinality(v_sessions);
    END LOOP;

    RETURN jsonb_build_object('tenants', v_tenants, 'sessions', v_deleted_sessions, 'events', v_deleted_events,
                              'more', v_more);
END;
$$;
