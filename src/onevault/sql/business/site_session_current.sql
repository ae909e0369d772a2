-- One row per session in force: its latest summary (by load date: each is computed from all the
-- session's events under its lock), the visitor holding it and the keys. Keys, customer and
-- visitor are scalar subqueries, so a query that does not read them does not pay for them.
CREATE OR REPLACE VIEW business.site_session_current AS
SELECT s.tenant_hk,
       (SELECT t.tenant_bk FROM auth.tenant_h t WHERE t.tenant_hk = s.tenant_hk) AS customer_id,
       s.site_session_hk,
       (SELECT h.site_session_bk FROM business.site_session_h h WHERE h.site_session_hk = s.site_session_hk)
           AS session_key,
       v.site_visitor_hk,
       (SELECT h.site_visitor_bk FROM business.site_visitor_h h WHERE h.site_visitor_hk = v.site_visitor_hk)
           AS visitor_key,
       s.session_start, s.session_end, s.page_views, s.event_count, s.duration_seconds, s.entry_page, s.exit_page,
       s.is_bounce, s.is_bot, s.referrer_host, s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign,
       s.utm_term, s.utm_content, s.record_source, s.load_date
FROM business.site_session_summary_s s
CROSS JOIN LATERAL (
    -- The holder by effectivity, else the session's only visitor link (docs/vault.md).
    SELECT coalesce((SELECT e.site_visitor_hk FROM business.site_session_visitor_eff_s e
                     WHERE e.site_session_hk = s.site_session_hk ORDER BY e.load_date DESC LIMIT 1),
                    (SELECT l.site_visitor_hk FROM business.site_session_visitor_l l
                     WHERE l.site_session_hk = s.site_session_hk ORDER BY l.load_date DESC LIMIT 1))
               AS site_visitor_hk
) v
WHERE s.in_force
  AND NOT EXISTS (SELECT 1 FROM business.site_session_summary_s n
                  WHERE n.site_session_hk = s.site_session_hk AND n.load_date > s.load_date);
