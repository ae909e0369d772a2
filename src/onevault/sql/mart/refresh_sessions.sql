-- Brings the marts up to date with the given sessions, each recomputed whole from the business
-- vault (mart.refresh_facts): after deletions (erasure, retention) and for `onevault mart rebuild`.
-- The sessions' entries in mart.session_queue are done with. The caller owns the transaction.
-- requires: mart/refresh_facts.sql
CREATE OR REPLACE FUNCTION mart.refresh_sessions(p_sessions bytea[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM mart.refresh_facts(p_sessions, false);
END;
$$;
