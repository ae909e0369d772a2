-- The screen and viewport size of each browser event (CSS pixels, as the tracker sends them),
-- read in staging (util.pixels) and kept in the vault's event details.
ALTER TABLE staging.site_tracking_events_s
    ADD COLUMN screen_width integer,
    ADD COLUMN screen_height integer,
    ADD COLUMN viewport_width integer,
    ADD COLUMN viewport_height integer;
ALTER TABLE business.site_event_details_s
    ADD COLUMN screen_width integer,
    ADD COLUMN screen_height integer,
    ADD COLUMN viewport_width integer,
    ADD COLUMN viewport_height integer;
