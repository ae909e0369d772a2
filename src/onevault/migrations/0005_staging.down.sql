DROP TABLE staging.site_tracking_events_s;
DROP TABLE staging.user_agent_parse;
DROP FUNCTION util.split_url(text);
DROP FUNCTION staging.referrer_class(text, text);
DROP FUNCTION staging.classify_user_agent(text);
DROP FUNCTION util.client_time(jsonb);
DROP FUNCTION util.query_param(text, text);
DROP FUNCTION util.url_decode(text);
