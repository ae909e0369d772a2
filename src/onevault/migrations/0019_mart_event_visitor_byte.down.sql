-- Back to 0018: the events' facts without their visitor's byte, found by customer and hour again.
CREATE INDEX session_event_f_tenant_hour_idx ON mart.session_event_f (tenant_hk, hour);
DROP INDEX mart.session_event_f_tenant_byte_hour_idx;
ALTER TABLE mart.session_event_f DROP COLUMN visitor_byte;
