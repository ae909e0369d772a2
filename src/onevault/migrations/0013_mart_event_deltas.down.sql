-- Back to 0012: every entry asks for its whole session (the code of 0012 recomputes them all).
ALTER TABLE mart.session_queue DROP COLUMN site_event_hks;
