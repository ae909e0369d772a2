-- name: ingest_events
-- Stores a group of events (of any tenants) in one statement; one result row per input position.
-- Parameters sent in binary: text arrays need no escaping, several times cheaper to send.
SELECT ord, raw_event_id, duplicate, lane
FROM raw.ingest_site_events(
    %(tenant_hks)b::bytea[], %(event_ids)b::text[], %(payloads)b::jsonb[], %(user_agents)b::text[],
    %(client_ips)b::inet[], %(received)b::timestamptz[], %(record_sources)b::text[]
);
