-- name: backlog
-- Raw events not yet processed, and sessions waiting for the information marts, for all tenants
-- (operators' view of the queues).
SELECT c.pending, c.errors, (SELECT count(DISTINCT m.site_session_hk) FROM mart.session_queue m) AS marts_pending
FROM raw.queue_counts() c;

-- name: server_info
-- The server's version, the schema version of the database layer, and the last day (UTC) the raw
-- layer has a partition for: events of a later day could not be stored (the scheduler makes them
-- ahead: an earlier day than tomorrow says it has not run).
SELECT current_setting('server_version') AS server_version,
       (SELECT max(version) FROM util.schema_migration) AS schema_version,
       (SELECT max(raw.event_day(raw.partition_upper(i.inhrelid) - 1)) FROM pg_inherits i
        WHERE i.inhparent = 'raw.site_tracking_events_r'::regclass) AS partitions_through;

-- name: pipeline_status
-- The automation layer's status of one tenant.
SELECT staging.get_pipeline_status(%(customer_id)s);

-- name: recent_events
-- The tenant's latest events as the dashboard view shows them.
SELECT raw_event_id, event_id, raw_load_date, raw_event_type, page_url, staging_status, validation_status,
       validation_reasons, business_status, error_message, processing_latency_ms
FROM staging.pipeline_dashboard
WHERE tenant_hk = util.tenant_hk(%(customer_id)s)
ORDER BY raw_load_date DESC, raw_event_id DESC
LIMIT %(limit)s;

-- name: automation_objects
-- Which of the named functions and the dashboard view exist.
SELECT n.nspname || '.' || p.proname AS name
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE (n.nspname, p.proname) IN (('api', 'track_site_event'), ('staging', 'auto_process_if_needed'),
                                 ('staging', 'trigger_pipeline_now'), ('staging', 'get_pipeline_status'))
UNION ALL
SELECT schemaname || '.' || viewname FROM pg_catalog.pg_views
WHERE schemaname = 'staging' AND viewname = 'pipeline_dashboard';
