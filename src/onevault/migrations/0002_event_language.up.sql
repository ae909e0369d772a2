-- The browser's language of each event (navigator.language, e.g. en-US), normalised in staging
-- (util.language_tag) and kept in the vault's event details.
ALTER TABLE staging.site_tracking_events_s ADD COLUMN language text;
ALTER TABLE business.site_event_details_s ADD COLUMN language text;
