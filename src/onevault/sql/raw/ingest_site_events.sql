-- Stores a batch of events for any tenants in one statement, idempotently.
-- Returns one row per input position (1-based): the raw_event_id that holds the event, whether
-- it was already there, and its lane. The key of raw.event_key decides, so racing copies store once.
-- requires: raw/day_first_id.sql
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
    ), numbered AS MATERIALIZED (
        -- Ids allotted in request order (as raw_event_id's default does), so that processing,
        -- oldest first, follows the order events were sent in; copies leave gaps.
        SELECT f.tenant_hk, f.event_id,
               raw.day_first_id((now() AT TIME ZONE 'UTC')::date) + nextval('raw.event_seq') % 274877906944 AS new_id
        FROM (SELECT x.tenant_hk, x.event_id FROM firsts x ORDER BY x.ord) f
    ), keys AS (
        -- The idempotency key decides; a key already there (or being written by a concurrent
        -- transaction, which this one then waits for) makes the event a copy. Keys are taken in
        -- one order, not the request's: two batches sharing event ids in other orders would
        -- otherwise each hold a key the other waits for (a deadlock).
        INSERT INTO raw.event_key AS k (tenant_hk, event_id, raw_event_id)
        SELECT n.tenant_hk, n.event_id, n.new_id FROM numbered n ORDER BY n.tenant_hk, n.event_id
        ON CONFLICT (tenant_hk, event_id) DO NOTHING
        RETURNING k.tenant_hk, k.event_id, k.raw_event_id
    ), ins AS (
        INSERT INTO raw.site_tracking_events_r AS r
            (raw_event_id, tenant_hk, event_id, raw_payload, user_agent, client_ip_hash, received_timestamp,
             record_source, processing_lane)
        SELECT k.raw_event_id, f.tenant_hk, f.event_id, f.raw_payload, f.user_agent, h.ip_hash,
               f.received_timestamp, f.record_source, raw.processing_lane(f.raw_payload, h.ip_hash, f.user_agent)
        FROM keys k
        JOIN firsts f ON f.tenant_hk = k.tenant_hk AND f.event_id = k.event_id
        CROSS JOIN LATERAL (SELECT util.hash_client_ip(f.client_ip, v_key) AS ip_hash) h
        ORDER BY k.raw_event_id
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
    -- earlier in this batch); this statement's fresh snapshot sees them all. (An event that raw's
    -- retention dropped while its key is kept has no lane left: 0 stands in.)
    -- Their lanes are read by naming their ids, which reads only their days' partitions.
    SELECT array_agg(i.ord), array_agg(k.raw_event_id) INTO v_ords, v_ids
    FROM unnest(p_tenant_hks, p_event_ids) WITH ORDINALITY AS i(tenant_hk, event_id, ord)
    LEFT JOIN unnest(v_ords) AS done(ord) ON done.ord = i.ord
    JOIN raw.event_key k ON k.tenant_hk = i.tenant_hk AND k.event_id = i.event_id
    WHERE done.ord IS NULL;
    RETURN QUERY
    SELECT d.ord, d.raw_event_id, true, coalesce(r.processing_lane, 0::smallint)
    FROM unnest(v_ords, v_ids) AS d(ord, raw_event_id)
    LEFT JOIN (SELECT x.raw_event_id, x.processing_lane FROM raw.site_tracking_events_r x
               WHERE x.raw_event_id = ANY (v_ids)) r ON r.raw_event_id = d.raw_event_id;
END;
$$;
