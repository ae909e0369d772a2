-- One row per visitor in force (holding at least one session in force): the current details
-- (latest by applied date, then load date) and the span of the sessions it holds. Visitors whose
-- sessions all belong to another (a visitor id that logged in, hubs of keys before 0.3.0) are
-- history, not current.
-- requires: business/site_session_current.sql
CREATE OR REPLACE VIEW business.site_visitor_current AS
SELECT h.tenant_hk,
       (SELECT t.tenant_bk FROM auth.tenant_h t WHERE t.tenant_hk = h.tenant_hk) AS customer_id,
       h.site_visitor_hk, h.site_visitor_bk AS visitor_key,
       d.user_id, d.browser_family, d.browser_version, d.os_family, d.os_version, d.device_type, d.is_bot,
       d.is_derived, s.first_seen, s.last_seen, s.sessions
FROM business.site_visitor_h h
CROSS JOIN LATERAL (SELECT min(c.session_start) AS first_seen, max(c.session_end) AS last_seen,
                           count(*) AS sessions
                    FROM business.site_session_visitor_l l
                    JOIN business.site_session_current c
                      ON c.site_session_hk = l.site_session_hk AND c.site_visitor_hk = l.site_visitor_hk
                    WHERE l.site_visitor_hk = h.site_visitor_hk) s
LEFT JOIN LATERAL (SELECT x.* FROM business.site_visitor_details_s x
                   WHERE x.site_visitor_hk = h.site_visitor_hk
                   ORDER BY x.applied_date DESC, x.load_date DESC LIMIT 1) d ON true
WHERE s.sessions > 0;
