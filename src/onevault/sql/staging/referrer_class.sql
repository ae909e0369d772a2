-- Referrer class: direct, internal, search, social or other (of lower-cased hosts). Search: a
-- search engine's name as a label followed by another (www.google.co.uk); social: the host is the
-- network's domain or under it. Compared label by label: the same tests as regular expressions
-- cost ten times more, once per event.
CREATE OR REPLACE FUNCTION staging.referrer_class(p_referrer_host text, p_page_host text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN p_referrer_host IS NULL OR p_referrer_host = '' THEN 'direct'
        WHEN p_referrer_host = p_page_host THEN 'internal'
        WHEN trim_array(string_to_array(p_referrer_host, '.'), 1)
                 && '{google,bing,duckduckgo,yahoo,baidu,yandex,ecosia,qwant,startpage}'::text[]
             OR strpos('.' || p_referrer_host, '.search.brave.') > 0
            THEN 'search'
        WHEN split_part(p_referrer_host, '.', -2) || '.' || split_part(p_referrer_host, '.', -1)
                 = ANY ('{facebook.com,fb.com,t.co,twitter.com,x.com,linkedin.com,lnkd.in,instagram.com,reddit.com,'
                        'pinterest.com,youtube.com,tiktok.com,mastodon.social,threads.net}'::text[])
             OR '.' || p_referrer_host LIKE '%.news.ycombinator.com'
            THEN 'social'
        ELSE 'other'
    END;
