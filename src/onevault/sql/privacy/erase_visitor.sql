-- Erases one person's data from every layer of a customer, in the caller's transaction (README,
-- "Erasing a person's data"): the person is the visitor p_visitor_id (a client's id or a derived
-- `anon-…` one), or every visitor seen with the user id p_user_id. Every event of theirs goes from
-- raw (also those still pending or failed) and staging; from the vault, insert-only otherwise, it
-- deletes their visitor hubs, details and links, their events' hubs, details, links and
-- effectivity rows, the sessions left without events (hub, summaries, state, links, effectivity),
-- and pages no other event was on. Sessions other people's events keep (a client session id seen
-- with several visitors) lose the person's links and summary history and are recomputed from the
-- events left, as a load of those events alone would give them. The marts follow in the same
-- transaction (mart.refresh_sessions: the facts of the sessions go, the rollups drop by their
-- contribution, visitor days are recomputed), and the rollup rows left at zero for the values and
-- days of those sessions are removed. The pipeline's counters forget the events.
-- Holds all of the customer's lanes (as staging.rebuild_vault does) and then its mart lock, so no
-- pipeline run loads any of the person's events meanwhile; events stored after the erasure are kept.
-- From psql: SELECT privacy.erase_visitor(util.tenant_hk('acme_shop'), 'visitor-id'), or
-- (util.tenant_hk('acme_shop'), NULL, 'user-id'); the audit then names the database user.
-- Records one privacy.erasure_audit row (counts, who, when; never an identifier) and returns
-- {"erasure_id", "visitors", "sessions", "events", "rows": {"schema.table": n, ...}}.
-- requires: staging/load_business.sql
-- requires: staging/visitor_hk.sql
-- requires: privacy/refresh_session_marts.sql
CREATE OR REPLACE FUNCTION privacy.erase_visitor(
    p_tenant_hk bytea, p_visitor_id text, p_user_id text DEFAULT NULL,
    p_erased_by text DEFAULT 'sql:' || session_user, p_record_source text DEFAULT 'sql:privacy.erase_visitor'
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_visitor text := util.canon_id(p_visitor_id);
    -- User ids are kept as sent, trimmed (stage_events).
    v_user text := nullif(btrim(p_user_id, E' \t\r\n\f\v'), '');
    v_ghost CONSTANT bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    v_visitors bytea[];
    v_raw bigint[];
    v_events bytea[];
    v_sessions bytea[];
    v_gone bytea[];
    v_kept bytea[];
    v_replay bigint[];
    v_pages bytea[];
    v_erased integer;
    v_gone_n integer := 0;
    v_rows jsonb := '{}';
    v_n bigint;
    v_keys bigint;
    v_id bigint;
BEGIN
    IF (v_visitor IS NULL) = (v_user IS NULL) THEN
        RAISE EXCEPTION 'name the person by a visitor id or by a user id: one of them, not blank'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The customer's lanes, in the order every run takes them, then its marts (as a run does).
    PERFORM pg_advisory_xact_lock(7071, hashtext(encode(p_tenant_hk, 'hex') || '/' || l))
    FROM generate_series(0, 7) l ORDER BY l;
    PERFORM pg_advisory_xact_lock(7072, hashtext(encode(p_tenant_hk, 'hex')));

    -- The person's visitors: the one named (a derived key and a client's are told apart by their
    -- hash namespace; both are taken), or those of every event that carries the user id.
    IF v_visitor IS NOT NULL THEN
        v_visitors := ARRAY[util.hash_key(p_tenant_hk, v_visitor), util.derived_key(p_tenant_hk, v_visitor)];
    ELSE
        SELECT coalesce(array_agg(DISTINCT x.hk), '{}') INTO v_visitors
        FROM (SELECT s.site_visitor_hk AS hk FROM staging.site_tracking_events_s s
              WHERE s.tenant_hk = p_tenant_hk AND s.user_id = v_user
              UNION ALL
              SELECT staging.visitor_hk(r.tenant_hk, coalesce(r.raw_payload ->> 'visitor_id',
                                                              r.raw_payload -> 'event_data' ->> 'visitor_id'),
                                        r.client_ip_hash, r.user_agent)
              FROM raw.event_queue q
              JOIN raw.site_tracking_events_r r ON r.raw_event_id = q.raw_event_id
              WHERE q.tenant_hk = p_tenant_hk
                AND nullif(btrim(coalesce(r.raw_payload ->> 'user_id', r.raw_payload -> 'event_data' ->> 'user_id'),
                                 E' \t\r\n\f\v'), '') = v_user) x
        WHERE x.hk IS NOT NULL;
    END IF;

    -- Their events: staged (in their derived sessions, in the client sessions they were seen in,
    -- quarantined, or not loaded), and not staged yet (pending, failed), read as staging reads them.
    SELECT coalesce(array_agg(DISTINCT x.raw_event_id), '{}'), count(DISTINCT x.site_visitor_hk)
    INTO v_raw, v_erased
    FROM (SELECT s.raw_event_id, s.site_visitor_hk FROM staging.site_tracking_events_s s
          WHERE s.site_visitor_hk = ANY (v_visitors) AND s.session_derived
          UNION ALL
          SELECT s.raw_event_id, s.site_visitor_hk FROM business.site_session_visitor_l l
          JOIN staging.site_tracking_events_s s ON s.site_session_hk = l.site_session_hk
          WHERE l.site_visitor_hk = ANY (v_visitors) AND s.site_visitor_hk = ANY (v_visitors)
          UNION ALL
          SELECT s.raw_event_id, s.site_visitor_hk FROM staging.site_tracking_events_s s
          WHERE s.tenant_hk = p_tenant_hk AND s.validation_status = 'INVALID' AND s.site_visitor_hk = ANY (v_visitors)
          UNION ALL
          SELECT s.raw_event_id, s.site_visitor_hk FROM staging.site_tracking_events_s s
          WHERE s.tenant_hk = p_tenant_hk AND s.business_loaded_at IS NULL AND s.validation_status <> 'INVALID'
            AND s.site_visitor_hk = ANY (v_visitors)
          UNION ALL
          SELECT r.raw_event_id, r.site_visitor_hk
          FROM (SELECT r.raw_event_id,
                       staging.visitor_hk(r.tenant_hk, coalesce(r.raw_payload ->> 'visitor_id',
                                                                r.raw_payload -> 'event_data' ->> 'visitor_id'),
                                          r.client_ip_hash, r.user_agent) AS site_visitor_hk
                FROM raw.event_queue q
                JOIN raw.site_tracking_events_r r ON r.raw_event_id = q.raw_event_id
                WHERE q.tenant_hk = p_tenant_hk) r
          WHERE r.site_visitor_hk = ANY (v_visitors)) x
    WHERE x.raw_event_id IS NOT NULL;

    SELECT coalesce(array_agg(s.site_event_hk) FILTER (WHERE s.site_event_hk IS NOT NULL), '{}') INTO v_events
    FROM staging.site_tracking_events_s s WHERE s.raw_event_id = ANY (v_raw);

    -- The sessions they touched, now or before (moves, holders, facts), and of those, the ones no
    -- other event is in (erased) and the ones others' events keep (recomputed).
    SELECT coalesce(array_agg(DISTINCT x.hk), '{}') INTO v_sessions
    FROM (SELECT s.site_session_hk AS hk FROM staging.site_tracking_events_s s
          WHERE s.raw_event_id = ANY (v_raw) AND s.validation_status <> 'INVALID'
          UNION ALL
          SELECT l.site_session_hk FROM business.site_event_session_l l WHERE l.site_event_hk = ANY (v_events)
          UNION ALL
          SELECT l.site_session_hk FROM business.site_session_visitor_l l WHERE l.site_visitor_hk = ANY (v_visitors)
          UNION ALL
          SELECT e.site_session_hk FROM business.site_session_visitor_eff_s e WHERE e.site_visitor_hk = ANY (v_visitors)
          UNION ALL
          SELECT f.site_session_hk FROM mart.session_f f WHERE f.site_visitor_hk = ANY (v_visitors)) x
    WHERE x.hk IS NOT NULL;

    -- (A session no event is in any more but others' events were — one they moved out of — is
    -- neither: it keeps its history, without the person's links.)
    SELECT coalesce(array_agg(x.hk) FILTER (WHERE NOT x.current AND NOT x.linked), '{}'),
           coalesce(array_agg(x.hk) FILTER (WHERE x.current), '{}')
    INTO v_gone, v_kept
    FROM (SELECT u.hk,
                 EXISTS (SELECT 1 FROM staging.site_tracking_events_s s
                         WHERE s.site_session_hk = u.hk AND s.validation_status <> 'INVALID'
                           AND s.raw_event_id NOT IN (SELECT unnest(v_raw))) AS current,
                 EXISTS (SELECT 1 FROM business.site_event_session_l l
                         WHERE l.site_session_hk = u.hk AND l.site_event_hk NOT IN (SELECT unnest(v_events)))
                     AS linked
          FROM unnest(v_sessions) u(hk)) x;

    -- The pipeline's counters (staging.pipeline_stats, by the UTC day they were counted on).
    UPDATE staging.pipeline_stats t
    SET staged = t.staged - c.staged, quarantined = t.quarantined - c.quarantined
    FROM (SELECT (s.load_date AT TIME ZONE 'UTC')::date AS day, count(*) AS staged,
                 count(*) FILTER (WHERE s.validation_status = 'INVALID') AS quarantined
          FROM staging.site_tracking_events_s s WHERE s.raw_event_id = ANY (v_raw) GROUP BY 1) c
    WHERE t.tenant_hk = p_tenant_hk AND t.day = c.day;
    UPDATE staging.pipeline_stats t
    SET loaded = t.loaded - c.loaded
    FROM (SELECT (h.load_date AT TIME ZONE 'UTC')::date AS day, count(*) AS loaded
          FROM business.site_event_h h WHERE h.site_event_hk = ANY (v_events) GROUP BY 1) c
    WHERE t.tenant_hk = p_tenant_hk AND t.day = c.day;

    -- Raw (with the events' idempotency keys) and staging.
    WITH gone AS (
        DELETE FROM raw.site_tracking_events_r r WHERE r.raw_event_id = ANY (v_raw) AND r.tenant_hk = p_tenant_hk
        RETURNING r.event_id
    ), keys AS (
        DELETE FROM raw.event_key k USING gone g WHERE k.tenant_hk = p_tenant_hk AND k.event_id = g.event_id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM keys) INTO v_n, v_keys;
    v_rows := v_rows || jsonb_build_object('raw.site_tracking_events_r', v_n, 'raw.event_key', v_keys);
    DELETE FROM staging.site_tracking_events_s s WHERE s.raw_event_id = ANY (v_raw) AND s.tenant_hk = p_tenant_hk;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('staging.site_tracking_events_s', v_n);

    -- The vault: the events.
    SELECT coalesce(array_agg(DISTINCT l.site_page_hk), '{}') INTO v_pages
    FROM business.site_event_page_l l WHERE l.site_event_hk = ANY (v_events) AND l.site_page_hk <> v_ghost;
    -- (Every row of an erased session is an erased event's: an event has rows only for sessions it
    -- is linked to, and no other event is linked to those.)
    DELETE FROM business.site_event_session_eff_s x WHERE x.site_event_hk = ANY (v_events);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_event_session_eff_s', v_n);
    DELETE FROM business.site_event_session_l x WHERE x.site_event_hk = ANY (v_events) OR x.site_session_hk = ANY (v_gone);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_event_session_l', v_n);
    DELETE FROM business.site_event_page_l x WHERE x.site_event_hk = ANY (v_events);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_event_page_l', v_n);
    DELETE FROM business.site_event_details_s x WHERE x.site_event_hk = ANY (v_events);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_event_details_s', v_n);
    DELETE FROM business.site_event_h x WHERE x.site_event_hk = ANY (v_events);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_event_h', v_n);

    -- Their sessions: gone entirely, or without the person (links, holders, summary history).
    DELETE FROM business.site_session_visitor_eff_s x
    WHERE x.site_session_hk = ANY (v_gone) OR x.site_visitor_hk = ANY (v_visitors);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_session_visitor_eff_s', v_n);
    DELETE FROM business.site_session_visitor_l x
    WHERE x.site_session_hk = ANY (v_gone) OR x.site_visitor_hk = ANY (v_visitors);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_session_visitor_l', v_n);
    DELETE FROM business.site_session_summary_s x WHERE x.site_session_hk = ANY (v_gone || v_kept);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_session_summary_s', v_n);
    DELETE FROM business.site_session_state x WHERE x.site_session_hk = ANY (v_gone);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_session_state', v_n);
    DELETE FROM business.site_session_h x WHERE x.site_session_hk = ANY (v_gone) AND x.tenant_hk = p_tenant_hk;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_gone_n := v_n;
    v_rows := v_rows || jsonb_build_object('business.site_session_h', v_n);

    -- Their visitors, and the pages only they were on.
    DELETE FROM business.site_visitor_details_s x WHERE x.site_visitor_hk = ANY (v_visitors);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_visitor_details_s', v_n);
    DELETE FROM business.site_visitor_h x WHERE x.site_visitor_hk = ANY (v_visitors) AND x.tenant_hk = p_tenant_hk;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_visitor_h', v_n);
    SELECT coalesce(array_agg(p.hk), '{}') INTO v_pages
    FROM unnest(v_pages) p(hk)
    WHERE NOT EXISTS (SELECT 1 FROM business.site_event_page_l l WHERE l.site_page_hk = p.hk);
    DELETE FROM business.site_page_details_s x WHERE x.site_page_hk = ANY (v_pages);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_page_details_s', v_n);
    DELETE FROM business.site_page_h x WHERE x.site_page_hk = ANY (v_pages) AND x.tenant_hk = p_tenant_hk;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_rows := v_rows || jsonb_build_object('business.site_page_h', v_n);

    -- The sessions others' events keep: recomputed from those events, as a replay of them loads
    -- them (summary, state, holder; what already holds is not written again).
    SELECT coalesce(array_agg(s.raw_event_id), '{}') INTO v_replay
    FROM staging.site_tracking_events_s s
    WHERE s.site_session_hk = ANY (v_kept) AND s.validation_status <> 'INVALID';
    IF cardinality(v_replay) > 0 THEN
        PERFORM staging.load_business(v_replay, '{}', true);
    END IF;

    -- The marts: every session touched, by what the vault holds now (the erased ones leave).
    SELECT count(*) INTO v_n FROM mart.session_f f WHERE f.site_session_hk = ANY (v_gone);
    PERFORM privacy.refresh_session_marts(p_tenant_hk, v_sessions);
    v_rows := v_rows || jsonb_build_object('mart.session_f', v_n);

    INSERT INTO privacy.erasure_audit (tenant_hk, erased_by, identified_by, visitors, sessions, events, erased_rows,
                                       record_source)
    VALUES (p_tenant_hk, p_erased_by, CASE WHEN v_visitor IS NOT NULL THEN 'visitor_id' ELSE 'user_id' END,
            v_erased, v_gone_n, cardinality(v_raw), v_rows, p_record_source)
    RETURNING erasure_id INTO v_id;

    RETURN jsonb_build_object('erasure_id', v_id, 'visitors', v_erased, 'sessions', v_gone_n,
                              'events', cardinality(v_raw), 'rows', v_rows);
END;
$$;
