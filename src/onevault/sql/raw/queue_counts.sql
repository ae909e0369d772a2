-- Unprocessed events (pending, failed) of the given tenants (NULL: all), read from the pending
-- index: its order, which no other index provides, and no sequential scan. Left to itself the
-- planner reads the whole table (or all of a tenant's events) whenever statistics were taken
-- during a backlog (they then say most events are pending): seconds at millions of events, for a
-- count that readiness probes and /metrics ask for.
CREATE OR REPLACE FUNCTION raw.queue_counts(p_tenant_hks bytea[] DEFAULT NULL, OUT pending bigint, OUT errors bigint)
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
