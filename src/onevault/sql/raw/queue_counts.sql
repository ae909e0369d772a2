-- Unprocessed events (pending, failed) of the given tenants (NULL: all), counted in the queue.
CREATE OR REPLACE FUNCTION raw.queue_counts(p_tenant_hks bytea[] DEFAULT NULL, OUT pending bigint, OUT errors bigint)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT count(*) FILTER (WHERE q.processing_status = 'PENDING'),
           count(*) FILTER (WHERE q.processing_status = 'ERROR')
    FROM raw.event_queue q
    WHERE p_tenant_hks IS NULL OR q.tenant_hk = ANY (p_tenant_hks);
END;
