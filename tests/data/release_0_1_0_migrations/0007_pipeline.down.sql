DROP FUNCTION staging.requeue_failed(bytea);
DROP FUNCTION staging.process_batch(bytea, integer, smallint[], boolean);
DROP FUNCTION staging.load_business(bigint[]);
DROP FUNCTION staging.stage_events(bigint[]);
DROP TABLE staging.pipeline_stats;
DROP TABLE staging.pipeline_rest;
