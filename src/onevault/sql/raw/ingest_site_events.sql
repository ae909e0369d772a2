-- Stores a batch of events for any tenants in one statement, idempotently.
-- Returns one row per input position (1-based): the raw_event_id that holds the event, whether
-- it was already there, and its lane. The unique constraint decides, so racing copies store once.
CREATE OR REPLACE FUNCTION raw.ingest_site_events(
    p_tenant_hks bytea[],
    p_event_ids text[],
    p_payloads jsonb[],
    p_user_agents text[],
    p_client_ips inet[],
    p_received timestamptz[],
    p_record_sources text[]
) RETURNS TABLE (ord bigint, raw_event_id bigint, duplicate boolean, lane smallint)
LANGUAGE plpgsql AS $$
DECLARE
    -- Only events with an IP need the key (a caller from psql may have none).
    v_key bytea := CASE WHEN cardinality(array_remove(p_client_ips, NULL)) > 0
                        THEN util.client_ip_key((SELECT max(r) FROM unnest(p_received) r)) END;
    v_ords bigint[];
    v_ids bigint[];
    v_lanes smallint[];
BEGIN
    WITH input AS (
        SELECT *
        FROM unnest(p_tenant_hks, p_event_ids, p_payloads, p_user_agents, p_client_ips, p_received,
                    p_record_sources)
             WITH ORDINALITY AS t(tenant_hk, event_id, raw_payload, user_agent, client_ip,
                                  received_timestamp, record_source, ord)
    ), firsts AS (
        SELECT DISTINCT ON (i.tenant_hk, i.event_id) i.*
        FROM input i
        ORDER BY i.tenant_hk, i.event_id, i.ord
    ), ins AS (
        INSERT INTO raw.site_tracking_events_r AS r
            (tenant_hk, event_id, raw_payload, user_agent, client_ip_hash, received_timestamp, record_source,
             processing_lane)
        SELECT f.tenant_hk, f.event_id, f.raw_payload, f.user_agent, h.ip_hash, f.received_timestamp,
               f.record_source, raw.processing_lane(f.raw_payload, h.ip_hash, f.user_agent)
        FROM firsts f
        CROSS JOIN LATERAL (SELECT util.hash_client_ip(f.client_ip, v_key) AS ip_hash) h
        ORDER BY f.ord
        ON CONFLICT ON CONSTRAINT site_tracking_events_r_event_id_key DO NOTHING
        RETURNING r.raw_event_id, r.tenant_hk, r.event_id, r.processing_lane
    )
    SELECT array_agg(f.ord), array_agg(ins.raw_event_id), array_agg(ins.processing_lane)
    INTO v_ords, v_ids, v_lanes
    FROM firsts f
    JOIN ins ON ins.tenant_hk = f.tenant_hk AND ins.event_id = f.event_id;

    RETURN QUERY SELECT n.ord, n.raw_event_id, false, n.lane
                 FROM unnest(v_ords, v_ids, v_lanes) AS n(ord, raw_event_id, lane);
    IF coalesce(cardinality(v_ords), 0) = cardinality(p_event_ids) THEN
        RETURN;
    END IF;
    -- The others are copies of events already stored (by an earlier or a concurrent request, or
    -- earlier in this batch); this statement's fresh snapshot sees them all.
    RETURN QUERY
    SELECT i.ord, r.raw_event_id, true, r.processing_lane
    FROM unnest(p_tenant_hks, p_event_ids) WITH ORDINALITY AS i(tenant_hk, event_id, ord)
    LEFT JOIN unnest(v_ords) AS done(ord) ON done.ord = i.ord
    JOIN raw.site_tracking_events_r r ON r.tenant_hk = i.tenant_hk AND r.event_id = i.event_id
    WHERE done.ord IS NULL;
END;
$$;
