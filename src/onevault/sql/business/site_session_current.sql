-- One row per session in force: its current summary and the visitor holding it, as the loader
-- keeps them in business.site_session_state beside the insert-only history. Keys and customer are
-- scalar subqueries, so a query that does not read them does not pay for them.
CREATE OR REPLACE VIEW business.site_session_current AS
SELECT s.tenant_hk,
       (SELECT t.tenant_bk FROM auth.tenant_h t WHERE t.tenant_hk = s.tenant_hk) AS customer_id,
       s.site_session_hk,
       (SELECT h.site_session_bk FROM business.site_session_h h WHERE h.site_session_hk = s.site_session_hk)
           AS session_key,
       s.site_visitor_hk,
       (SELECT h.site_visitor_bk FROM business.site_visitor_h h WHERE h.site_visitor_hk = s.site_visitor_hk)
           AS visitor_key,
       s.session_start, s.session_end, s.page_views, s.event_count, s.duration_seconds, s.entry_page, s.exit_page,
       s.is_bounce, s.is_bot, s.referrer_host, s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign,
       s.utm_term, s.utm_content, s.record_source, s.load_date
FROM business.site_session_state s;
