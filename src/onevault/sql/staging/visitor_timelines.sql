-- The staged events whose derived sessions new events can change (staging.stage_events calls it
-- from its main statement with the batch's valid events without a client session: their
-- visitors and times). Per visitor, the span re-derived is its new events and the whole of every
-- staged derived session within 30 minutes of one of them — the only sessions they can extend,
-- start earlier or merge; returned: the visitor's derived staged events in that span.
-- Staging is partitioned by day: the two lookups carry bounds of raw_event_id known when they are
-- planned (staging.id_floor and id_ceiling), so they plan and read only the days from the floor
-- to today. The first floor comes from the new events' times, the second from the starts of the
-- sessions found (business.site_session_state: a session's first and last staged event). Called
-- from a statement whose plan is kept, it plans only these two small lookups for each batch, and
-- the batch's events are read and parsed once, by that statement.
-- requires: staging/id_floor.sql
-- requires: staging/id_ceiling.sql
CREATE OR REPLACE FUNCTION staging.visitor_timelines(p_visitors bytea[], p_times timestamptz[])
RETURNS TABLE (
    tenant_hk bytea, site_visitor_hk bytea, visitor_id text, occurred_at timestamptz, raw_event_id bigint,
    site_event_hk bytea, site_session_hk bytea
)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_from timestamptz := (SELECT min(t) FROM unnest(p_times) t) - interval '30 minutes';
    v_ceiling bigint := staging.id_ceiling();
    v_touched_visitors bytea[];
    v_touched_sessions bytea[];
    v_touched_starts timestamptz[];
    v_touched_ends timestamptz[];
BEGIN
    IF v_from IS NULL THEN
        RETURN;
    END IF;
    -- The visitors' staged derived sessions within 30 minutes of one of the new events (the
    -- invalid ones among them are not told apart here, which adds whole sessions that come out as
    -- they were). Their events happened from their start on.
    EXECUTE $touched$
        SELECT array_agg(n.site_visitor_hk), array_agg(n.site_session_hk), array_agg(st.session_start),
               array_agg(st.session_end), least($3, min(st.session_start))
        FROM (
            SELECT DISTINCT e.site_visitor_hk, x.site_session_hk
            FROM unnest($1::bytea[], $2::timestamptz[]) e(site_visitor_hk, occurred_at)
            CROSS JOIN LATERAL (
                (SELECT s.site_session_hk FROM staging.site_tracking_events_s s
                 WHERE s.site_visitor_hk = e.site_visitor_hk AND s.session_derived
                   AND s.raw_event_id >= $4 AND s.raw_event_id < $5
                   AND s.occurred_at BETWEEN e.occurred_at - interval '30 minutes' AND e.occurred_at
                 ORDER BY s.occurred_at DESC LIMIT 1)
                UNION ALL
                (SELECT s.site_session_hk FROM staging.site_tracking_events_s s
                 WHERE s.site_visitor_hk = e.site_visitor_hk AND s.session_derived
                   AND s.raw_event_id >= $4 AND s.raw_event_id < $5
                   AND s.occurred_at BETWEEN e.occurred_at AND e.occurred_at + interval '30 minutes'
                 ORDER BY s.occurred_at LIMIT 1)
            ) x
        ) n
        LEFT JOIN business.site_session_state st ON st.site_session_hk = n.site_session_hk
    $touched$
    INTO v_touched_visitors, v_touched_sessions, v_touched_starts, v_touched_ends, v_from
    USING p_visitors, p_times, v_from, coalesce(staging.id_floor(v_from), 9223372036854775807), v_ceiling;
    -- Per visitor, the time span re-derived: its new events and the whole of every session they
    -- touch (from its state; read from staging only for a session that has none, which business
    -- retention removed); the visitor's staged events in it.
    RETURN QUERY EXECUTE $timeline$
        WITH spans AS (
            SELECT x.site_visitor_hk, min(x.first_at) AS first_at, max(x.last_at) AS last_at
            FROM (
                SELECT e.site_visitor_hk, e.occurred_at AS first_at, e.occurred_at AS last_at
                FROM unnest($1::bytea[], $2::timestamptz[]) e(site_visitor_hk, occurred_at)
                UNION ALL
                SELECT t.site_visitor_hk, coalesce(t.first_at, m.first_at), coalesce(t.last_at, m.last_at)
                FROM unnest($3::bytea[], $4::bytea[], $7::timestamptz[], $8::timestamptz[])
                     t(site_visitor_hk, site_session_hk, first_at, last_at)
                LEFT JOIN LATERAL (SELECT min(s.occurred_at) AS first_at, max(s.occurred_at) AS last_at
                                   FROM staging.site_tracking_events_s s
                                   WHERE t.first_at IS NULL AND s.site_session_hk = t.site_session_hk
                                     AND s.raw_event_id >= $5 AND s.raw_event_id < $6) m ON true
            ) x
            GROUP BY x.site_visitor_hk
        )
        SELECT s.tenant_hk, s.site_visitor_hk, s.visitor_id, s.occurred_at, s.raw_event_id, s.site_event_hk,
               s.site_session_hk
        FROM spans p
        -- Read visitor by visitor (OFFSET 0 keeps the subquery from being flattened into a join):
        -- the planner, which guesses a hundred visitors per array, otherwise hash-joins them with
        -- every derived event of the days read (10 ms a batch of 1,000 with one day of 24,000).
        CROSS JOIN LATERAL (
            SELECT s.tenant_hk, s.site_visitor_hk, s.visitor_id, s.occurred_at, s.raw_event_id, s.site_event_hk,
                   s.site_session_hk
            FROM staging.site_tracking_events_s s
            WHERE s.site_visitor_hk = p.site_visitor_hk AND s.session_derived
              AND s.raw_event_id >= $5 AND s.raw_event_id < $6
              AND s.occurred_at BETWEEN p.first_at AND p.last_at
            OFFSET 0
        ) s
    $timeline$
    USING p_visitors, p_times, v_touched_visitors, v_touched_sessions,
          coalesce(staging.id_floor(v_from), 9223372036854775807), v_ceiling, v_touched_starts, v_touched_ends;
END;
$$;
