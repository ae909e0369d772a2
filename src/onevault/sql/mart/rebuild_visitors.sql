-- Recomputes the marts of a customer's next p_limit visitors after p_after (NULL: from the
-- first), in key order: the facts of every session they hold or held, from the vault, and the
-- rollups by the difference (mart.refresh_sessions), in the caller's transaction.
-- Returns {"visitors": n, "sessions": n, "last": hex of the last visitor's key, or null when done}.
-- requires: mart/refresh_sessions.sql
CREATE OR REPLACE FUNCTION mart.rebuild_visitors(p_tenant_hk bytea, p_after bytea, p_limit integer DEFAULT 1000)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_visitors bytea[];
    v_sessions bytea[];
BEGIN
    SELECT coalesce(array_agg(h.site_visitor_hk ORDER BY h.site_visitor_hk), '{}') INTO v_visitors
    FROM (SELECT v.site_visitor_hk FROM business.site_visitor_h v
          WHERE v.tenant_hk = p_tenant_hk AND (p_after IS NULL OR v.site_visitor_hk > p_after)
          ORDER BY v.site_visitor_hk LIMIT p_limit) h;
    IF cardinality(v_visitors) = 0 THEN
        RETURN jsonb_build_object('visitors', 0, 'sessions', 0, 'last', NULL);
    END IF;
    SELECT coalesce(array_agg(DISTINCT s.site_session_hk), '{}') INTO v_sessions
    FROM (SELECT l.site_session_hk FROM business.site_session_visitor_l l WHERE l.site_visitor_hk = ANY (v_visitors)
          UNION ALL
          SELECT f.site_session_hk FROM mart.session_f f WHERE f.site_visitor_hk = ANY (v_visitors)) s;
    PERFORM mart.refresh_sessions(v_sessions);
    RETURN jsonb_build_object('visitors', cardinality(v_visitors), 'sessions', cardinality(v_sessions),
                              'last', encode(v_visitors[cardinality(v_visitors)], 'hex'));
END;
$$;
