-- layer: automation
-- Where every event of a tenant (or of all tenants) stands.
CREATE OR REPLACE VIEW staging.pipeline_dashboard AS
SELECT r.raw_event_id,
       t.tenant_bk AS customer_id,
       r.tenant_hk,
       r.event_id,
       r.received_timestamp AS raw_load_date,
       coalesce(r.raw_payload ->> 'event_type', r.raw_payload -> 'event_data' ->> 'event_type', 'page_view')
           AS raw_event_type,
       coalesce(s.page_url, r.raw_payload ->> 'page_url') AS page_url,
       CASE WHEN r.processing_status = 'ERROR' THEN 'ERROR'
            WHEN r.processing_status = 'PENDING' THEN 'PENDING'
            WHEN s.validation_status = 'INVALID' THEN 'INVALID'
            ELSE 'PROCESSED' END AS staging_status,
       s.validation_status,
       s.validation_reasons,
       CASE WHEN s.business_loaded_at IS NOT NULL THEN '✅ Complete Pipeline'
            WHEN s.validation_status = 'INVALID' THEN '❌ Quarantined'
            ELSE '⏳ Pending' END AS business_status,
       r.error_message,
       s.business_loaded_at,
       round(extract(epoch FROM s.business_loaded_at - r.received_timestamp) * 1000)::bigint AS processing_latency_ms
FROM raw.site_tracking_events_r r
JOIN auth.tenant_h t ON t.tenant_hk = r.tenant_hk
LEFT JOIN staging.site_tracking_events_s s ON s.raw_event_id = r.raw_event_id;
