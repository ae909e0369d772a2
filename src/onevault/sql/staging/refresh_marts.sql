-- The pipeline's step into the information marts (mart.refresh_queued): up to 20,000 waiting
-- sessions at a time (more wait for the next run or sweep, as after an upgrade). A failure there
-- is reported as a warning and leaves the sessions waiting, so that the marts never hold back
-- the vault.
-- requires: mart/refresh_queued.sql
CREATE OR REPLACE FUNCTION staging.refresh_marts(p_tenant_hk bytea) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    RETURN mart.refresh_queued(p_tenant_hk, 20000);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'information marts of tenant % not refreshed: %', encode(p_tenant_hk, 'hex'), SQLERRM;
    RETURN 0;
END;
$$;
