-- Back to 0004: the pipeline functions of 0004 are recreated by the code of that release. Rows
-- of one key and load that differ only by applied date (several changes in one batch) keep the
-- latest, as 0004's key requires.
DROP FUNCTION IF EXISTS staging.stage_events(bigint[]);
DROP FUNCTION IF EXISTS staging.load_business(bigint[], bigint[], boolean);

DELETE FROM business.site_page_details_s WHERE site_page_hk = '\x0000000000000000000000000000000000000000000000000000000000000000';
DELETE FROM business.site_page_h WHERE site_page_hk = '\x0000000000000000000000000000000000000000000000000000000000000000';
DELETE FROM business.site_event_page_l WHERE site_page_hk = '\x0000000000000000000000000000000000000000000000000000000000000000';

DROP INDEX staging.site_tracking_events_s_session_idx;
DROP INDEX business.site_session_visitor_l_session_idx;
DROP INDEX business.site_page_h_tenant_idx;
DROP INDEX business.site_visitor_h_tenant_idx;

DROP TABLE business.site_session_visitor_eff_s;
DROP TABLE business.site_event_session_eff_s;

DROP TABLE business.site_session_state;
ALTER TABLE business.site_session_summary_s DROP COLUMN in_force;

DROP INDEX business.site_page_details_s_tenant_idx;
ALTER TABLE business.site_page_details_s DROP CONSTRAINT site_page_details_s_pkey;
DELETE FROM business.site_page_details_s d
WHERE EXISTS (SELECT 1 FROM business.site_page_details_s n
              WHERE n.site_page_hk = d.site_page_hk AND n.load_date = d.load_date AND n.applied_date > d.applied_date);
ALTER TABLE business.site_page_details_s DROP COLUMN applied_date;
ALTER TABLE business.site_page_details_s ADD PRIMARY KEY (site_page_hk, load_date);

ALTER TABLE business.site_visitor_details_s DROP CONSTRAINT site_visitor_details_s_pkey;
DELETE FROM business.site_visitor_details_s d
WHERE EXISTS (SELECT 1 FROM business.site_visitor_details_s n
              WHERE n.site_visitor_hk = d.site_visitor_hk AND n.load_date = d.load_date
                AND n.applied_date > d.applied_date);
ALTER TABLE business.site_visitor_details_s DROP COLUMN applied_date;
ALTER TABLE business.site_visitor_details_s ADD PRIMARY KEY (site_visitor_hk, load_date);
