-- Back to 0017: refreshes read the visitors' other sessions again (the code of 0017 does).
CREATE INDEX session_f_visitor_idx ON mart.session_f (site_visitor_hk);
DROP INDEX mart.session_f_visitor_end_idx;
DROP TABLE mart.visitor_key_days;
