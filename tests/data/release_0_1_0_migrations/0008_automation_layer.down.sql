DROP FUNCTION staging.get_pipeline_status(text);
DROP VIEW staging.pipeline_dashboard;
DROP FUNCTION staging.trigger_pipeline_now(text);
DROP FUNCTION staging.auto_process_if_needed(text, integer, smallint[], boolean);
DROP FUNCTION staging.resolve_tenants(text);
