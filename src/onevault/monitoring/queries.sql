-- name: backlog
-- Raw events not yet processed, for all tenants (operators' view of the queue).
SELECT count(*) FILTER (WHERE processing_status = 'PENDING') AS pending,
       count(*) FILTER (WHERE processing_status = 'ERROR') AS errors
FROM raw.site_tracking_events_r
WHERE processing_status <> 'PROCESSED';

-- name: server_info
-- The server's version and the schema version of the database layer.
SELECT current_setting('server_version') AS server_version,
       (SELECT max(version) FROM util.schema_migration) AS schema_version;
