-- The information marts of a customer's loaded sessions, when they are due: at once when the run
-- that loaded them has caught up (it found fewer events than it could take, or none), else once
-- 5,000 entries wait (a session is queued by every batch that touches it), so that a backlog's
-- sessions and visitors, touched by many batches, are refreshed once. In a backlog a run does not
-- wait for another run's refresh (the lock of mart.refresh_queued): its sessions wait for the next
-- one. Returns how many sessions it refreshed. staging.process_batch calls it at the end of its
-- batch; the service calls it in a transaction of its own right after the batch's commit, so that
-- the batch's rows (pages, which runs of other lanes share) are not held during the refresh.
-- requires: staging/refresh_marts.sql
CREATE OR REPLACE FUNCTION staging.refresh_marts_if_due(p_tenant_hk bytea, p_caught_up boolean) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    IF p_caught_up
       OR (EXISTS (SELECT 1 FROM mart.session_queue x WHERE x.tenant_hk = p_tenant_hk OFFSET 4999)
           AND pg_try_advisory_xact_lock(7072, hashtext(encode(p_tenant_hk, 'hex')))) THEN
        RETURN staging.refresh_marts(p_tenant_hk);
    END IF;
    RETURN 0;
END;
$$;
