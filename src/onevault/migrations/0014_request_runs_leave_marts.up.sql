-- A pipeline run may leave the information marts to a later run (p_refresh_marts false: the run
-- of one POST /api/v1/track request, which answers once the event is in the vault):
-- staging.process_batch and staging.auto_process_if_needed gain that parameter (their code is in
-- sql/staging/). Their signatures without it go, so that no call is ambiguous.
DROP FUNCTION IF EXISTS staging.auto_process_if_needed(text, integer, smallint[], boolean);
DROP FUNCTION IF EXISTS staging.process_batch(bytea, integer, smallint[], boolean);
