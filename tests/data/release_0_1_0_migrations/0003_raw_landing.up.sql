-- The raw landing table: one row per accepted event, the event verbatim, nothing derived.
-- No foreign key to auth.tenant_h: events come only from callers resolved to a tenant (tenants
-- are never deleted), and the per-row check, with its share lock on the tenant's row taken by
-- every concurrent writer, cost a fifth of batch ingestion's throughput.
CREATE TABLE raw.site_tracking_events_r (
    raw_event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_hk bytea NOT NULL,
    event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 128),
    raw_payload jsonb NOT NULL CHECK (jsonb_typeof(raw_payload) = 'object'),
    received_timestamp timestamptz NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL,
    user_agent text,
    client_ip_hash bytea,
    processing_status text NOT NULL DEFAULT 'PENDING'
        CHECK (processing_status IN ('PENDING', 'PROCESSED', 'ERROR')),
    error_message text,
    retry_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    processed_at timestamptz,
    -- Events of one visitor (and of one client session) share a lane: see raw.processing_lane.
    processing_lane smallint NOT NULL DEFAULT 0 CHECK (processing_lane BETWEEN 0 AND 7),
    CONSTRAINT site_tracking_events_r_event_id_key UNIQUE (tenant_hk, event_id)
);
COMMENT ON COLUMN raw.site_tracking_events_r.event_id IS
    'Idempotency key per tenant: the client''s event_id, or a UUID given at ingestion';
COMMENT ON COLUMN raw.site_tracking_events_r.client_ip_hash IS
    'SHA-256 of the client IP keyed with util.ip_hash_key; the IP itself is never stored';

-- The queue: a tenant's unprocessed events in arrival order, with their lanes, so that a claim of
-- some lanes skips the others' entries in the index itself. Claims order by `raw_event_id + 0`,
-- an order only this index provides. Ordered by raw_event_id itself, the planner walks the
-- primary key instead, through every processed row, whenever statistics were taken during a
-- backlog (they then say most events are pending): each claim grew with the events ever stored.
CREATE INDEX site_tracking_events_r_pending_idx
    ON raw.site_tracking_events_r (tenant_hk, (raw_event_id + 0), processing_lane)
    WHERE processing_status <> 'PROCESSED';
CREATE INDEX site_tracking_events_r_tenant_received_idx
    ON raw.site_tracking_events_r (tenant_hk, received_timestamp);
-- For operators' "latest events" queries across all tenants (staging.pipeline_dashboard).
CREATE INDEX site_tracking_events_r_received_idx ON raw.site_tracking_events_r (received_timestamp);

-- Unprocessed events (pending, failed) of the given tenants (NULL: all), read from the pending
-- index: its order, which no other index provides, and no sequential scan. Left to itself the
-- planner reads the whole table (or all of a tenant's events) whenever statistics were taken
-- during a backlog (they then say most events are pending): seconds at millions of events, for a
-- count that readiness probes and /metrics ask for.
CREATE FUNCTION raw.queue_counts(p_tenant_hks bytea[] DEFAULT NULL, OUT pending bigint, OUT errors bigint)
LANGUAGE sql STABLE
SET enable_seqscan = off
BEGIN ATOMIC
    SELECT count(*) FILTER (WHERE q.processing_status = 'PENDING'),
           count(*) FILTER (WHERE q.processing_status = 'ERROR')
    FROM (SELECT r.processing_status FROM raw.site_tracking_events_r r
          WHERE r.processing_status <> 'PROCESSED'
            AND (p_tenant_hks IS NULL OR r.tenant_hk = ANY (p_tenant_hks))
          ORDER BY r.tenant_hk, r.raw_event_id + 0) q;
END;

-- The lane of an event, 0 to 7, from the key its sessions hang on: the visitor id the client sent,
-- else its session id, else what staging derives a visitor from (IP hash and user agent), read
-- as staging reads them. Batches of different lanes never share a visitor's derived sessions or
-- a client session, so they are processed at the same time (staging.process_batch).
CREATE FUNCTION raw.processing_lane(p_payload jsonb, p_client_ip_hash bytea, p_user_agent text)
RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (hashtext(coalesce(
    p_payload ->> 'visitor_id', p_payload -> 'event_data' ->> 'visitor_id',
    p_payload ->> 'session_id', p_payload -> 'event_data' ->> 'session_id',
    encode(coalesce(p_client_ip_hash, '\x'::bytea), 'hex') || coalesce(p_user_agent, ''))) & 7)::smallint;

-- Stores a batch of events for any tenants in one statement, idempotently.
-- Returns one row per input position (1-based): the raw_event_id that holds the event, whether
-- it was already there, and its lane. The unique constraint decides, so racing copies store once.
CREATE FUNCTION raw.ingest_site_events(
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
    v_key bytea := (SELECT k.hash_key FROM util.ip_hash_key k);
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
