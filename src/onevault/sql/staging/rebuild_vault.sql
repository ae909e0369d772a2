-- Recomputes the derived data of a customer's visitors from staging (docs/vault.md): the next
-- p_limit visitor hubs after p_after (NULL: from the first), in the caller's transaction.
-- Re-canonicalises their events' keys, re-derives their sessions on the whole timeline, and
-- loads what differs (links, effectivity, summaries, satellite rows); a second run inserts
-- nothing. Holds the customer's lanes (staging.process_batch) meanwhile, so it runs beside the pipeline.
-- Returns {"visitors": n, "events": n, "last": hex of the last visitor hub, or null when done}.
-- requires: staging/load_business.sql
-- requires: staging/refresh_marts.sql
-- requires: staging/derived_session_id.sql
CREATE OR REPLACE FUNCTION staging.rebuild_vault(p_tenant_hk bytea, p_after bytea, p_limit integer DEFAULT 200)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_visitors bytea[];
    v_ids bigint[];
    v_canonical bytea[];
    v_moved bigint[];
    v_resessioned bigint[];
BEGIN
    SELECT coalesce(array_agg(h.site_visitor_hk ORDER BY h.site_visitor_hk), '{}') INTO v_visitors
    FROM (SELECT v.site_visitor_hk FROM business.site_visitor_h v
          WHERE v.tenant_hk = p_tenant_hk AND (p_after IS NULL OR v.site_visitor_hk > p_after)
          ORDER BY v.site_visitor_hk LIMIT p_limit) h;
    IF cardinality(v_visitors) = 0 THEN
        RETURN jsonb_build_object('visitors', 0, 'events', 0, 'last', NULL);
    END IF;

    -- Their events: those of every session they were seen in.
    SELECT coalesce(array_agg(DISTINCT s.raw_event_id), '{}') INTO v_ids
    FROM business.site_session_visitor_l l
    JOIN staging.site_tracking_events_s s ON s.site_session_hk = l.site_session_hk
    WHERE l.site_visitor_hk = ANY (v_visitors) AND s.site_visitor_hk = ANY (v_visitors)
      AND s.validation_status <> 'INVALID';

    -- Their sessions may be in any lane: hold all of the customer's, as a run waiting for them does.
    PERFORM pg_advisory_xact_lock(7071, hashtext(encode(p_tenant_hk, 'hex') || '/' || l))
    FROM generate_series(0, 7) l ORDER BY l;

    -- Canonical keys (rows staged before 0.3.0): a client session that changes key moves.
    WITH canonical AS (
        SELECT s.raw_event_id, s.site_session_hk AS old_session_hk,
               CASE WHEN s.visitor_derived THEN s.visitor_id ELSE util.canon_id(s.visitor_id) END AS visitor_id,
               CASE WHEN s.visitor_derived THEN util.derived_key(s.tenant_hk, s.visitor_id)
                    ELSE util.hash_key(s.tenant_hk, util.canon_id(s.visitor_id)) END AS site_visitor_hk,
               s.session_derived OR util.canon_id(s.session_id) IS NULL AS session_derived,
               CASE WHEN s.session_derived THEN s.session_id ELSE util.canon_id(s.session_id) END AS session_id,
               CASE WHEN s.session_derived THEN s.site_session_hk
                    ELSE util.hash_key(s.tenant_hk, util.canon_id(s.session_id)) END AS site_session_hk
        FROM staging.site_tracking_events_s s
        WHERE s.raw_event_id = ANY (v_ids)
    ), updated AS (
        UPDATE staging.site_tracking_events_s s
        SET visitor_id = c.visitor_id, site_visitor_hk = c.site_visitor_hk, session_derived = c.session_derived,
            session_id = c.session_id, site_session_hk = c.site_session_hk
        FROM canonical c
        WHERE s.raw_event_id = c.raw_event_id
          AND (s.visitor_id, s.site_visitor_hk, s.session_derived, s.session_id, s.site_session_hk)
              IS DISTINCT FROM (c.visitor_id, c.site_visitor_hk, c.session_derived, c.session_id, c.site_session_hk)
        RETURNING s.raw_event_id, c.old_session_hk IS DISTINCT FROM c.site_session_hk AND NOT c.session_derived
                      AS moved
    )
    SELECT coalesce(array_agg(u.raw_event_id) FILTER (WHERE u.moved), '{}') INTO v_moved FROM updated u;

    -- Derived sessions on each visitor's whole timeline.
    SELECT coalesce(array_agg(DISTINCT s.site_visitor_hk), '{}') INTO v_canonical
    FROM staging.site_tracking_events_s s WHERE s.raw_event_id = ANY (v_ids);
    WITH timeline AS (
        SELECT s.raw_event_id, s.tenant_hk, s.site_visitor_hk, s.visitor_id, s.occurred_at, s.site_event_hk,
               s.site_session_hk,
               CASE WHEN s.occurred_at > lag(s.occurred_at) OVER w + interval '30 minutes' THEN 1 ELSE 0 END
                   AS starts_session
        FROM staging.site_tracking_events_s s
        WHERE s.site_visitor_hk = ANY (v_canonical) AND s.session_derived AND s.validation_status <> 'INVALID'
        WINDOW w AS (PARTITION BY s.site_visitor_hk ORDER BY s.occurred_at, s.site_event_hk)
    ), grouped AS (
        SELECT t.*, sum(t.starts_session) OVER (PARTITION BY t.site_visitor_hk
                                                ORDER BY t.occurred_at, t.site_event_hk) AS session_no
        FROM timeline t
    ), derived AS (
        SELECT d.*, util.derived_key(d.tenant_hk, d.session_id) AS new_session_hk
        FROM (SELECT g.raw_event_id, g.tenant_hk, g.site_session_hk,
                     staging.derived_session_id(
                         g.visitor_id, min(g.occurred_at) OVER (PARTITION BY g.site_visitor_hk, g.session_no)) AS session_id
              FROM grouped g) d
    ), updated AS (
        UPDATE staging.site_tracking_events_s s
        SET session_id = d.session_id, site_session_hk = d.new_session_hk
        FROM derived d
        WHERE s.raw_event_id = d.raw_event_id AND s.site_session_hk IS DISTINCT FROM d.new_session_hk
        RETURNING s.raw_event_id
    )
    SELECT (SELECT coalesce(array_agg(d.raw_event_id), '{}') FROM derived d),
           v_moved || (SELECT coalesce(array_agg(u.raw_event_id), '{}') FROM updated u)
    INTO v_resessioned, v_moved;

    v_ids := ARRAY(SELECT DISTINCT unnest(v_ids || v_resessioned));
    PERFORM staging.load_business(v_ids, v_moved, true);
    -- The marts follow the sessions the chunk changed.
    PERFORM staging.refresh_marts(p_tenant_hk);
    RETURN jsonb_build_object('visitors', cardinality(v_visitors), 'events', cardinality(v_ids),
                              'last', encode(v_visitors[cardinality(v_visitors)], 'hex'));
END;
$$;
