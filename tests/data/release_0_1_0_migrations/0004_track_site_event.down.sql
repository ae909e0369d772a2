DROP FUNCTION api.track_site_event(text, text, text, jsonb, inet, text, text);
