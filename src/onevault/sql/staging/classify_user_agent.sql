-- Coarse user-agent classification for agents the application has not parsed yet.
CREATE OR REPLACE FUNCTION staging.classify_user_agent(
    p_user_agent text,
    OUT browser_family text, OUT browser_version text, OUT os_family text, OUT os_version text,
    OUT device_type text, OUT is_bot boolean
) LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT
        CASE WHEN ua ~* 'edg/' THEN 'Edge' WHEN ua ~* 'opr/' THEN 'Opera' WHEN ua ~* 'firefox/' THEN 'Firefox'
             WHEN ua ~* 'chrome/' THEN 'Chrome' WHEN ua ~* 'safari/' THEN 'Safari' ELSE 'Other' END,
        substring(ua FROM '(?:Edg|OPR|Firefox|Chrome|Version)/([0-9]+)'),
        CASE WHEN ua ~* 'android' THEN 'Android' WHEN ua ~* 'iphone|ipad|ipod' THEN 'iOS'
             WHEN ua ~* 'windows' THEN 'Windows' WHEN ua ~* 'mac os x' THEN 'Mac OS X'
             WHEN ua ~* 'linux' THEN 'Linux' ELSE 'Other' END,
        NULL::text,
        CASE WHEN bot THEN 'bot' WHEN ua ~* 'ipad|tablet' THEN 'tablet'
             WHEN ua ~* 'mobi|iphone|android' THEN 'mobile' ELSE 'desktop' END,
        bot
    FROM (SELECT coalesce(p_user_agent, '') AS ua,
                 coalesce(p_user_agent, '') ~* '(bot|crawl|spider|slurp|scrape|headless|curl/|wget|python-|java/|go-http|httpclient|phantomjs|lighthouse)'
                     AS bot) s;
END;
