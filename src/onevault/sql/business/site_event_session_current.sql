-- The session in force of each event: its latest effectivity row, else its only link.
CREATE OR REPLACE VIEW business.site_event_session_current AS
SELECT e.tenant_hk, e.site_event_hk,
       coalesce((SELECT f.site_session_hk FROM business.site_event_session_eff_s f
                 WHERE f.site_event_hk = e.site_event_hk ORDER BY f.load_date DESC LIMIT 1),
                (SELECT l.site_session_hk FROM business.site_event_session_l l
                 WHERE l.site_event_hk = e.site_event_hk ORDER BY l.load_date DESC LIMIT 1)) AS site_session_hk
FROM business.site_event_h e;
