-- One row per visitor: the current details (latest by applied date, then load date) and the
-- span of the sessions in force it was seen in.
-- requires: business/site_session_current.sql
CREATE OR REPLACE VIEW business.site_visitor_current AS
SELECT h.tenant_hk,
       (SELECT t.tenant_bk FROM auth.tenant_h t WHERE t.tenant_hk = h.tenant_hk) AS customer_id,
       h.site_visitor_hk, h.site_visitor_bk AS visitor_key,
       d.user_id, d.browser_family, d.browser_version, d.os_family, d.os_version, d.device_type, d.is_bot,
       d.is_derived,
       (SELECT min(c.session_start) FROM business.site_session_visitor_l l
        JOIN business.site_session_current c ON c.site_session_hk = l.site_session_hk
        WHERE l.site_visitor_hk = h.site_visitor_hk) AS first_seen,
       (SELECT max(c.session_end) FROM business.site_session_visitor_l l
        JOIN business.site_session_current c ON c.site_session_hk = l.site_session_hk
        WHERE l.site_visitor_hk = h.site_visitor_hk) AS last_seen
FROM business.site_visitor_h h
LEFT JOIN LATERAL (SELECT x.* FROM business.site_visitor_details_s x
                   WHERE x.site_visitor_hk = h.site_visitor_hk
                   ORDER BY x.applied_date DESC, x.load_date DESC LIMIT 1) d ON true;
