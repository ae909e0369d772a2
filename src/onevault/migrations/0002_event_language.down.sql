ALTER TABLE business.site_event_details_s DROP COLUMN language;
ALTER TABLE staging.site_tracking_events_s DROP COLUMN language;
