-- name: ingest_events
-- Stores a group of events (of any tenants) in one statement; one result row per input position.
SELECT ord, raw_event_id, duplicate
FROM raw.ingest_site_events(
    %(tenant_hks)s::bytea[], %(event_ids)s::text[], %(payloads)s::jsonb[], %(user_agents)s::text[],
    %(client_ips)s::inet[], %(received)s::timestamptz[], %(record_sources)s::text[]
);
