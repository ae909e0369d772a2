-- The analytics benchmark's statements (bench/analytics.py): a set-based generator of a customer's
-- business vault (as the pipeline would have loaded it), and the dashboard's answers computed the
-- naive way, straight from the vault tables, to compare with the stats API over the marts.
-- Not used by the service.

-- ---------------------------------------------------------------------------------------------
-- Generator. Sessions are drawn first (start, visitor, referrer, UTM tags, their events as arrays),
-- then visitors; every vault table is written from those two work tables in a few statements.
-- ---------------------------------------------------------------------------------------------

-- name: gen_prepare
-- The generator's work tables, unlogged (dropped once the vault is written), and the view of
-- their events.
DROP SCHEMA IF EXISTS bench_gen CASCADE;
CREATE SCHEMA bench_gen;
CREATE UNLOGGED TABLE bench_gen.session (
    tenant_hk bytea NOT NULL,
    n bigint NOT NULL,
    session_bk text NOT NULL,
    visitor_bk text NOT NULL,
    is_bot boolean NOT NULL,
    started_at timestamptz NOT NULL,
    offsets_ms bigint[] NOT NULL,
    pages integer[] NOT NULL,
    types text[] NOT NULL,
    referrer_url text,
    utm_source text,
    utm_medium text,
    utm_campaign text
);
CREATE UNLOGGED TABLE bench_gen.event (
    tenant_hk bytea NOT NULL,
    n bigint NOT NULL,
    j integer NOT NULL,
    event_bk text NOT NULL,
    is_bot boolean NOT NULL,
    site_event_hk bytea NOT NULL,
    site_session_hk bytea NOT NULL,
    site_page_hk bytea NOT NULL,
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL,
    page_path text NOT NULL,
    page_url text NOT NULL,
    referrer_url text,
    referrer_host text,
    utm_source text,
    utm_medium text,
    utm_campaign text
);
CREATE UNLOGGED TABLE bench_gen.visitor (
    tenant_hk bytea NOT NULL,
    visitor_bk text NOT NULL,
    is_bot boolean NOT NULL,
    first_at timestamptz NOT NULL,
    browser text NOT NULL,
    browser_version text,
    os text NOT NULL,
    os_version text,
    device text NOT NULL
);
-- A page number's path: a few named pages, then blog posts, docs and products. A quoted body of
-- immutable functions only (p::text, not || p), which the planner inlines.
CREATE FUNCTION bench_gen.path(p integer) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE p WHEN 0 THEN '/' WHEN 1 THEN '/pricing' WHEN 2 THEN '/features' WHEN 3 THEN '/blog'
                        WHEN 4 THEN '/signup' WHEN 5 THEN '/docs' WHEN 6 THEN '/about' WHEN 7 THEN '/contact'
                        WHEN 8 THEN '/login' WHEN 9 THEN '/integrations'
                        ELSE '/' || CASE p % 3 WHEN 0 THEN 'blog' WHEN 1 THEN 'docs' ELSE 'products' END
                             || '/page-' || p::text END $$;

-- name: gen_sessions
-- A customer's sessions until they hold %(events)s events: starts with a daily and weekly rhythm
-- in its zone (growing by a third over the period), 1-10 events (four in ten sessions one, 2.5
-- on average, page views mostly), visitors new (three in four) or from a loyal few returning on
-- many days, bots (3 in 100), referrers (direct, search, social, other hosts), UTM tags on one
-- session in ten, pages Zipf-distributed over 2,000 paths. No session ends after %(until)s.
INSERT INTO bench_gen.session (tenant_hk, n, session_bk, visitor_bk, is_bot, started_at, offsets_ms, pages, types,
                               referrer_url, utm_source, utm_medium, utm_campaign)
WITH hours AS MATERIALIZED (
    SELECT h, w, sum(w) OVER (ORDER BY h) - w AS below, sum(w) OVER () AS total
    FROM generate_series(date_trunc('hour', %(since)s::timestamptz), %(until)s::timestamptz, interval '1 hour') h
    CROSS JOIN LATERAL (
        SELECT (('{2,1,1,1,1,2,3,5,8,10,11,12,12,11,11,12,12,11,10,10,10,8,6,4}'::float8[])
                    [extract(hour FROM h AT TIME ZONE %(zone)s)::integer + 1]
                * CASE WHEN extract(isodow FROM h AT TIME ZONE %(zone)s) IN (6, 7) THEN 0.65 ELSE 1 END
                * (1 + 0.33 * extract(epoch FROM h - %(since)s::timestamptz)
                       / extract(epoch FROM %(until)s::timestamptz - %(since)s::timestamptz))) AS w
    ) x
), lookup AS MATERIALIZED (
    -- 100,000 equally likely hours: a uniform number picks an hour with the rhythm's odds.
    SELECT k, h
    FROM hours, generate_series(ceil(below / total * 100000)::integer,
                                ceil((below + w) / total * 100000)::integer - 1) k
), drawn AS (
    SELECT i, random() AS r_hour, random() AS r_second, random() AS r_events, random() AS r_bot,
           random() AS r_visitor, random() AS r_loyal, random() AS r_referrer, random() AS r_host,
           random() AS r_utm, random() AS r_source, random() AS r_campaign,
           -- Events: one for 0.40 of them, else 2 + a geometric number (q = 0.6), at most 10.
           CASE WHEN random() < 0.40 THEN 1
                ELSE 2 + least(floor(ln(1 - random()) / ln(0.6)), 8)::integer END AS k
    FROM generate_series(1, ceil(%(events)s / 2.0)::integer) i
), counted AS (
    SELECT d.*, sum(d.k) OVER (ORDER BY d.i) AS upto FROM drawn d
), sessions AS (
    SELECT c.*, least(c.k, %(events)s - (c.upto - c.k))::integer AS events, c.r_bot < 0.03 AS is_bot,
           CASE WHEN c.r_utm < 0.10 THEN (ARRAY['google', 'newsletter', 'facebook', 'twitter', 'linkedin', 'partner'])
                                             [1 + floor(c.r_source * 6)::integer] END AS utm_source
    FROM counted c
    WHERE c.upto - c.k < %(events)s
)
SELECT %(tenant_hk)s, s.i, %(prefix)s || '-s' || s.i,
       CASE WHEN s.is_bot THEN %(prefix)s || '-bot' || floor(s.r_visitor * 40)
            WHEN s.r_visitor < 0.74 THEN %(prefix)s || '-v' || s.i
            -- The loyal pool (0.015 times the sessions' count), the first ones far more often.
            ELSE %(prefix)s || '-l' || floor(greatest(%(events)s * 0.006, 1) * s.r_loyal ^ 2) END,
       s.is_bot,
       -- Shifted back so that its last event is no later than %(until)s.
       least(date_trunc('milliseconds', l.h + s.r_second * interval '1 hour'),
             %(until)s::timestamptz - ev.offsets_ms[s.events] * interval '1 millisecond'),
       ev.offsets_ms, ev.pages, ev.types,
       CASE WHEN s.is_bot OR s.r_referrer < 0.42 THEN NULL
            WHEN s.r_referrer < 0.72 THEN (ARRAY['https://www.google.com/', 'https://www.google.com/',
                                                 'https://www.google.com/', 'https://www.google.de/',
                                                 'https://www.bing.com/', 'https://duckduckgo.com/',
                                                 'https://search.yahoo.com/search?p=x', 'https://www.ecosia.org/'])
                                          [1 + floor(s.r_host * 8)::integer]
            WHEN s.r_referrer < 0.82 THEN (ARRAY['https://www.facebook.com/', 'https://t.co/abc',
                                                 'https://www.reddit.com/r/analytics/', 'https://www.linkedin.com/feed/',
                                                 'https://news.ycombinator.com/item?id=1'])[1 + floor(s.r_host * 5)::integer]
            WHEN s.r_referrer < 0.97 THEN 'https://blog' || (floor(exp(s.r_host * ln(301)))::integer - 1)
                                          || '.example.org/post'
            ELSE 'https://shop.example.com/' END,
       s.utm_source,
       CASE WHEN s.utm_source = 'google' THEN 'cpc' WHEN s.utm_source = 'newsletter' THEN 'email'
            WHEN s.utm_source = 'partner' THEN 'referral' WHEN s.utm_source IS NOT NULL THEN 'social' END,
       CASE WHEN s.utm_source IS NOT NULL
            THEN (ARRAY['spring-sale', 'black-friday', 'launch-2026', 'retargeting', 'brand'])[1 + floor(s.r_campaign * 5)::integer]
                 || CASE WHEN s.r_campaign > 0.5 THEN '-' || floor(exp(s.r_campaign * ln(20)))::integer ELSE '' END
       END
FROM sessions s
JOIN lookup l ON l.k = floor(s.r_hour * 100000)::integer
CROSS JOIN LATERAL (
    -- Each event's time after the session's start (1 s to 25 min apart), page and type.
    SELECT array_agg(e.offset_ms ORDER BY e.j) AS offsets_ms, array_agg(e.page ORDER BY e.j) AS pages,
           array_agg(e.type ORDER BY e.j) AS types
    FROM (SELECT g.j, sum(g.gap_ms) OVER (ORDER BY g.j)::bigint AS offset_ms, g.page, g.type
          FROM (SELECT j, CASE WHEN j = 1 THEN 0 ELSE 1000 + least(-ln(1 - random()) * 75000, 1500000)::bigint END
                              AS gap_ms,
                       floor(exp(random() * ln(2001)))::integer - 1 AS page,
                       CASE WHEN j = 1 OR s.is_bot OR random() < 0.8 THEN 'page_view'
                            ELSE (ARRAY['click', 'signup', 'download', 'add_to_cart'])[1 + floor(random() * 4)::integer]
                       END AS type
                FROM generate_series(1, s.events) j) g) e
) ev;

-- name: gen_visitors
-- The customer's visitors, each with one browser, OS and device (a desktop, mobile and tablet mix).
INSERT INTO bench_gen.visitor (tenant_hk, visitor_bk, is_bot, first_at, browser, browser_version, os, os_version, device)
SELECT v.tenant_hk, v.visitor_bk, v.is_bot, v.first_at,
       CASE WHEN v.is_bot THEN 'Googlebot'
            WHEN d.os IN ('iOS') THEN CASE WHEN v.r_browser < 0.85 THEN 'Mobile Safari' ELSE 'Chrome Mobile iOS' END
            WHEN d.os = 'Android' THEN CASE WHEN v.r_browser < 0.75 THEN 'Chrome Mobile'
                                            WHEN v.r_browser < 0.95 THEN 'Samsung Internet' ELSE 'Firefox Mobile' END
            WHEN d.os = 'Mac OS X' THEN CASE WHEN v.r_browser < 0.55 THEN 'Safari' WHEN v.r_browser < 0.9 THEN 'Chrome'
                                             ELSE 'Firefox' END
            ELSE CASE WHEN v.r_browser < 0.65 THEN 'Chrome' WHEN v.r_browser < 0.85 THEN 'Edge'
                      WHEN v.r_browser < 0.97 THEN 'Firefox' ELSE 'Opera' END
       END,
       CASE WHEN v.is_bot THEN '2' ELSE (100 + floor(v.r_browser * 30))::text END,
       CASE WHEN v.is_bot THEN 'Other' ELSE d.os END,
       NULL,
       CASE WHEN v.is_bot THEN 'bot' ELSE d.device END
FROM (SELECT s.tenant_hk, s.visitor_bk, bool_or(s.is_bot) AS is_bot, min(s.started_at) AS first_at,
             random() AS r_device, random() AS r_os, random() AS r_browser
      FROM bench_gen.session s
      WHERE s.tenant_hk = %(tenant_hk)s
      GROUP BY s.tenant_hk, s.visitor_bk) v
CROSS JOIN LATERAL (
    SELECT x.device,
           CASE WHEN x.device = 'desktop' THEN CASE WHEN v.r_os < 0.65 THEN 'Windows' WHEN v.r_os < 0.90 THEN 'Mac OS X'
                                                    WHEN v.r_os < 0.97 THEN 'Linux' ELSE 'Chrome OS' END
                WHEN x.device = 'mobile' THEN CASE WHEN v.r_os < 0.45 THEN 'iOS' ELSE 'Android' END
                ELSE CASE WHEN v.r_os < 0.70 THEN 'iOS' ELSE 'Android' END END AS os
    FROM (SELECT CASE WHEN v.r_device < 0.55 THEN 'desktop' WHEN v.r_device < 0.93 THEN 'mobile' ELSE 'tablet' END
                     AS device) x
) d;

-- name: gen_events
-- Every event of the sessions, as the pipeline would have staged it: the first carries the
-- session's referrer and UTM tags, the others the previous page as (internal) referrer.
INSERT INTO bench_gen.event
SELECT s.tenant_hk, s.n, e.j, s.session_bk || '-' || e.j, s.is_bot,
       util.hash_key(s.tenant_hk, s.session_bk || '-' || e.j),
       util.hash_key(s.tenant_hk, s.session_bk),
       util.hash_key(s.tenant_hk, 'https://shop.example.com' || p.path),
       s.started_at + e.offset_ms * interval '1 millisecond',
       e.type, p.path,
       'https://shop.example.com' || p.path
           || CASE WHEN e.j = 1 AND s.utm_source IS NOT NULL
                   THEN '?utm_source=' || s.utm_source || '&utm_medium=' || s.utm_medium
                        || '&utm_campaign=' || s.utm_campaign
                   ELSE '' END,
       r.referrer_url, split_part(split_part(r.referrer_url, '://', 2), '/', 1),
       CASE WHEN e.j = 1 THEN s.utm_source END,
       CASE WHEN e.j = 1 THEN s.utm_medium END,
       CASE WHEN e.j = 1 THEN s.utm_campaign END
FROM bench_gen.session s
CROSS JOIN LATERAL unnest(s.offsets_ms, s.pages, s.types) WITH ORDINALITY e(offset_ms, page, type, j)
CROSS JOIN LATERAL (SELECT bench_gen.path(e.page) AS path) p
CROSS JOIN LATERAL (SELECT CASE WHEN e.j = 1 THEN s.referrer_url
                                ELSE 'https://shop.example.com' || bench_gen.path(s.pages[e.j - 1]) END
                               AS referrer_url) r;

-- name: vault_indexes
-- The indexes of the vault tables, with the primary keys they back: dropped before the bulk
-- load and built after it (as pg_restore does), which is much faster than inserting millions
-- of random hash keys into indexes larger than the buffer cache.
SELECT t.relname AS table_name, x.relname AS index_name, pg_get_indexdef(i.indexrelid) AS index_def,
       c.conname AS constraint_name, pg_get_constraintdef(c.oid) AS constraint_def
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_class x ON x.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = t.oid AND c.contype IN ('p', 'u')
WHERE n.nspname = 'business' AND t.relname = ANY (%(tables)s)
ORDER BY t.relname, x.relname;

-- name: gen_hubs
-- The hubs: visitors, sessions, pages and events.
WITH visitor_h AS (
    INSERT INTO business.site_visitor_h (site_visitor_hk, site_visitor_bk, tenant_hk, load_date, record_source)
    SELECT util.hash_key(v.tenant_hk, v.visitor_bk), v.visitor_bk, v.tenant_hk, %(load)s, %(source)s
    FROM bench_gen.visitor v
), session_h AS (
    INSERT INTO business.site_session_h (site_session_hk, site_session_bk, tenant_hk, load_date, record_source)
    SELECT util.hash_key(s.tenant_hk, s.session_bk), s.session_bk, s.tenant_hk, %(load)s, %(source)s
    FROM bench_gen.session s
), page_h AS (
    INSERT INTO business.site_page_h (site_page_hk, site_page_bk, tenant_hk, load_date, record_source)
    SELECT DISTINCT ON (e.site_page_hk) e.site_page_hk, 'https://shop.example.com' || e.page_path, e.tenant_hk,
           %(load)s, %(source)s
    FROM bench_gen.event e
    ON CONFLICT DO NOTHING  -- pages seen before the live minutes
)
INSERT INTO business.site_event_h (site_event_hk, site_event_bk, tenant_hk, load_date, record_source)
SELECT e.site_event_hk, e.event_bk, e.tenant_hk, %(load)s, %(source)s
FROM bench_gen.event e;

-- name: gen_links
-- The links: each event's session (one link, no effectivity rows) and page, each session's visitor.
WITH event_session_l AS (
    INSERT INTO business.site_event_session_l (link_event_session_hk, site_event_hk, site_session_hk, tenant_hk,
                                               load_date, record_source)
    SELECT sha256(e.site_event_hk || e.site_session_hk), e.site_event_hk, e.site_session_hk, e.tenant_hk, %(load)s,
           %(source)s
    FROM bench_gen.event e
), session_visitor_l AS (
    INSERT INTO business.site_session_visitor_l (link_session_visitor_hk, site_session_hk, site_visitor_hk,
                                                 tenant_hk, load_date, record_source)
    SELECT sha256(x.site_session_hk || x.site_visitor_hk), x.site_session_hk, x.site_visitor_hk, x.tenant_hk,
           %(load)s, %(source)s
    FROM (SELECT util.hash_key(s.tenant_hk, s.session_bk) AS site_session_hk,
                 util.hash_key(s.tenant_hk, s.visitor_bk) AS site_visitor_hk, s.tenant_hk
          FROM bench_gen.session s) x
)
INSERT INTO business.site_event_page_l (link_event_page_hk, site_event_hk, site_page_hk, tenant_hk, load_date,
                                        record_source)
SELECT sha256(e.site_event_hk || e.site_page_hk), e.site_event_hk, e.site_page_hk, e.tenant_hk, %(load)s,
       %(source)s
FROM bench_gen.event e;

-- name: gen_event_details
-- One details row per event, hashed as the loader hashes it.
INSERT INTO business.site_event_details_s (
    site_event_hk, load_date, hash_diff, tenant_hk, raw_event_id, event_type, occurred_at, received_at, page_url,
    referrer_url, referrer_host, referrer_class, utm_source, utm_medium, utm_campaign, utm_term, utm_content,
    user_id, is_bot, validation_status, quality_score, event_properties, record_source, language)
SELECT e.site_event_hk, %(load)s,
       util.hash_diff(e.event_type, util.iso_utc(e.occurred_at), e.page_url, e.referrer_url, NULL, NULL),
       e.tenant_hk, e.n * 16 + e.j, e.event_type, e.occurred_at, e.occurred_at + interval '80 milliseconds',
       e.page_url, e.referrer_url, e.referrer_host,
       CASE WHEN e.referrer_url IS NULL THEN 'direct' ELSE staging.referrer_class(e.referrer_host, 'shop.example.com') END,
       e.utm_source, e.utm_medium, e.utm_campaign, NULL, NULL, NULL, e.is_bot, 'VALID', 1.00, NULL, %(source)s,
       'en-US'
FROM bench_gen.event e;

-- name: gen_details
-- Page details (as of each page's first event), visitor details (as of the visitor's first
-- event), and each session's summary and state (the current summary and holder).
WITH page_details AS (
    INSERT INTO business.site_page_details_s (site_page_hk, applied_date, load_date, hash_diff, tenant_hk, page_host,
                                              page_path, page_title, record_source)
    SELECT p.site_page_hk, p.first_at, %(load)s, util.hash_diff('shop.example.com', p.page_path, p.title),
           p.tenant_hk, 'shop.example.com', p.page_path, p.title, %(source)s
    FROM (SELECT e.site_page_hk, e.tenant_hk, e.page_path, initcap(e.page_path) AS title, min(e.occurred_at) AS first_at
          FROM bench_gen.event e GROUP BY 1, 2, 3) p
    ON CONFLICT DO NOTHING
), visitor_details AS (
    INSERT INTO business.site_visitor_details_s (site_visitor_hk, applied_date, load_date, hash_diff, tenant_hk,
                                                 user_id, browser_family, browser_version, os_family, os_version,
                                                 device_type, is_bot, is_derived, record_source)
    SELECT util.hash_key(v.tenant_hk, v.visitor_bk), v.first_at, %(load)s,
           util.hash_diff(NULL, v.browser, v.browser_version, v.os, v.os_version, v.device, v.is_bot::text, 'false'),
           v.tenant_hk, NULL, v.browser, v.browser_version, v.os, v.os_version, v.device, v.is_bot, false, %(source)s
    FROM bench_gen.visitor v
), sessions AS MATERIALIZED (
    SELECT util.hash_key(s.tenant_hk, s.session_bk) AS site_session_hk, s.tenant_hk,
           util.hash_key(s.tenant_hk, s.visitor_bk) AS site_visitor_hk, s.started_at AS session_start,
           s.started_at + s.offsets_ms[cardinality(s.offsets_ms)] * interval '1 millisecond' AS session_end,
           cardinality(array_positions(s.types, 'page_view')) AS page_views, cardinality(s.types) AS event_count,
           extract(epoch FROM s.offsets_ms[cardinality(s.offsets_ms)] * interval '1 millisecond')::integer
               AS duration_seconds,
           'https://shop.example.com' || bench_gen.path(s.pages[1])
               || CASE WHEN s.utm_source IS NOT NULL
                       THEN '?utm_source=' || s.utm_source || '&utm_medium=' || s.utm_medium
                            || '&utm_campaign=' || s.utm_campaign
                       ELSE '' END AS entry_page,
           'https://shop.example.com' || bench_gen.path(s.pages[cardinality(s.pages)]) AS exit_page,
           s.is_bot, r.referrer_host,
           CASE WHEN s.referrer_url IS NULL THEN 'direct'
                ELSE staging.referrer_class(r.referrer_host, 'shop.example.com') END AS referrer_class,
           s.utm_source, s.utm_medium, s.utm_campaign
    FROM bench_gen.session s
    CROSS JOIN LATERAL (SELECT split_part(split_part(s.referrer_url, '://', 2), '/', 1) AS referrer_host) r
), summary AS (
    INSERT INTO business.site_session_summary_s (
        site_session_hk, load_date, hash_diff, tenant_hk, session_start, session_end, page_views, event_count,
        duration_seconds, entry_page, exit_page, is_bounce, is_bot, referrer_host, referrer_class, utm_source,
        utm_medium, utm_campaign, utm_term, utm_content, record_source, in_force)
    SELECT s.site_session_hk, %(load)s,
           util.hash_diff(util.iso_utc(s.session_start), util.iso_utc(s.session_end), s.page_views::text,
                          s.event_count::text, s.entry_page, s.exit_page, s.is_bot::text, s.referrer_host,
                          s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign, NULL, NULL, 'true'),
           s.tenant_hk, s.session_start, s.session_end, s.page_views, s.event_count, s.duration_seconds,
           s.entry_page, s.exit_page, s.page_views <= 1, s.is_bot, s.referrer_host, s.referrer_class, s.utm_source,
           s.utm_medium, s.utm_campaign, NULL, NULL, %(source)s, true
    FROM sessions s
)
INSERT INTO business.site_session_state (
    site_session_hk, tenant_hk, site_visitor_hk, load_date, session_start, session_end, page_views, event_count,
    duration_seconds, entry_page, exit_page, is_bounce, is_bot, referrer_host, referrer_class, utm_source,
    utm_medium, utm_campaign, utm_term, utm_content, record_source)
SELECT s.site_session_hk, s.tenant_hk, s.site_visitor_hk, %(load)s, s.session_start, s.session_end, s.page_views,
       s.event_count, s.duration_seconds, s.entry_page, s.exit_page, s.page_views <= 1, s.is_bot, s.referrer_host,
       s.referrer_class, s.utm_source, s.utm_medium, s.utm_campaign, NULL, NULL, %(source)s
FROM sessions s;

-- name: gen_counts
-- What the generator wrote, per customer: events, sessions, visitors, bot sessions, days.
SELECT s.tenant_hk, sum(cardinality(s.types))::bigint AS events, count(*) AS sessions,
       count(DISTINCT s.visitor_bk) AS visitors, count(*) FILTER (WHERE s.is_bot) AS bot_sessions,
       count(*) FILTER (WHERE cardinality(s.types) = 1) AS one_event_sessions,
       count(*) FILTER (WHERE s.utm_source IS NOT NULL) AS utm_sessions,
       min(s.started_at) AS first_at, max(s.started_at) AS last_at
FROM bench_gen.session s
GROUP BY s.tenant_hk;

-- name: gen_cleanup
-- The work tables are no longer needed.
DROP SCHEMA bench_gen CASCADE;

-- name: table_sizes
-- Size on disk of the marts' and the vault's tables, with their indexes and TOAST, and their rows.
SELECT n.nspname AS schema, c.relname AS table_name, pg_total_relation_size(c.oid) AS bytes,
       pg_relation_size(c.oid) AS heap_bytes, c.reltuples::bigint AS rows
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND ((n.nspname = 'mart' AND c.relname = ANY (%(marts)s)) OR (n.nspname = 'business' AND c.relname = ANY (%(vault)s)))
ORDER BY 1, 2;

-- name: live_sessions
-- The sessions the generator wrote last (the live minutes), whose marts the pipeline would refresh.
SELECT array_agg(util.hash_key(s.tenant_hk, s.session_bk)) FROM bench_gen.session s;

-- name: refresh_sessions
-- What staging.load_business does last: the marts of the sessions it touched.
SELECT mart.refresh_sessions(%(sessions)s::bytea[]);

-- name: refresh_batch
-- What the pipeline's refresh does with the sessions a batch touched (their queued entries).
SELECT mart.refresh_facts(%(sessions)s::bytea[], true);

-- name: refresh_definition
-- mart.refresh_facts as a CREATE statement (to restore it), and its body.
SELECT pg_get_functiondef(p.oid), p.prosrc
FROM pg_proc p
WHERE p.oid = 'mart.refresh_facts(bytea[], boolean)'::regprocedure;

-- name: batch_sessions
-- The sessions of the events this transaction loaded into the business vault (as load_business
-- finds them: stage_events marks a row loaded at or after the transaction's start).
SELECT array_agg(DISTINCT s.site_session_hk)
FROM staging.site_tracking_events_s s
WHERE s.business_loaded_at >= now() AND s.validation_status <> 'INVALID';

-- name: no_marts
-- The pipeline without the marts: their refresh does nothing (in the database it runs in only).
CREATE OR REPLACE FUNCTION mart.refresh_facts(p_sessions bytea[], p_deltas boolean) RETURNS void LANGUAGE sql AS '';

-- name: without_marts
-- The pipeline without the marts' work (in the database it runs in only): their refresh takes the
-- sessions' queue entries and computes nothing, so that the queue stays as short as with the marts
-- (left to grow, every refresh call would read up to 20,000 entries: ~5 ms of CPU per 1,000 events).
CREATE OR REPLACE FUNCTION mart.refresh_facts(p_sessions bytea[], p_deltas boolean) RETURNS void LANGUAGE sql
AS 'DELETE FROM mart.session_queue q WHERE q.site_session_hk = ANY (p_sessions)';

-- ---------------------------------------------------------------------------------------------
-- The naive way: the dashboard's answers straight from the business vault, as an application
-- without marts computes them (docs/analytics.md says what is counted): sessions in force without
-- a bot event (business.site_session_current) with their holder's current browser, OS and device,
-- their events in force (an event's latest effectivity row, else its link) with their details. A
-- customer's date range is the local days [start, end] in its time zone.
-- ---------------------------------------------------------------------------------------------

-- name: naive_views
-- The sessions and events the figures count, with the attributes the dashboard breaks them down by.
DROP SCHEMA IF EXISTS naive CASCADE;
CREATE SCHEMA naive;
-- A page URL's path ('/' for none, '' without a URL): from the first '/' after "://" to the query.
-- The vault holds URLs as the pipeline normalised them (scheme://host/path?query, no fragment).
-- One expression in a quoted body, so that the planner inlines it.
CREATE FUNCTION naive.path(p_url text) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN p_url IS NULL THEN ''
                      WHEN strpos(substr(split_part(p_url, '?', 1), strpos(p_url, '://') + 3), '/') = 0 THEN '/'
                      ELSE substr(split_part(p_url, '?', 1),
                                  strpos(p_url, '://') + 2
                                  + strpos(substr(split_part(p_url, '?', 1), strpos(p_url, '://') + 3), '/')) END $$;
CREATE VIEW naive.visit AS
SELECT c.tenant_hk, c.site_session_hk, c.site_visitor_hk, c.session_start, c.session_end, c.page_views,
       c.duration_seconds, c.is_bounce, naive.path(c.entry_page) AS entry_page, naive.path(c.exit_page) AS exit_page,
       coalesce(c.referrer_host, '') AS referrer, coalesce(c.referrer_class, '') AS channel,
       coalesce(c.utm_source, '') AS utm_source, coalesce(c.utm_medium, '') AS utm_medium,
       coalesce(c.utm_campaign, '') AS utm_campaign, coalesce(v.browser_family, '') AS browser,
       coalesce(v.os_family, '') AS os, coalesce(v.device_type, '') AS device
FROM business.site_session_current c
LEFT JOIN LATERAL (
    -- The holder's current details (of its latest event).
    SELECT d.browser_family, d.os_family, d.device_type
    FROM business.site_visitor_details_s d
    WHERE d.site_visitor_hk = c.site_visitor_hk
    ORDER BY d.applied_date DESC, d.load_date DESC
    LIMIT 1
) v ON true
WHERE NOT c.is_bot AND c.site_visitor_hk IS NOT NULL;
CREATE VIEW naive.visit_event AS
SELECT s.*, d.occurred_at, d.event_type, naive.path(d.page_url) AS page
FROM naive.visit s
JOIN business.site_event_session_l l ON l.site_session_hk = s.site_session_hk
JOIN business.site_event_details_s d ON d.site_event_hk = l.site_event_hk
-- An event's session is its latest effectivity row's, else its only link's: a link is out of
-- force when the event's latest effectivity row names another session (as anti-joins, which the
-- planner estimates well).
WHERE NOT EXISTS (SELECT FROM business.site_event_session_eff_s f
                  WHERE f.site_event_hk = l.site_event_hk AND f.site_session_hk <> l.site_session_hk
                    AND NOT EXISTS (SELECT FROM business.site_event_session_eff_s g
                                    WHERE g.site_event_hk = f.site_event_hk AND g.load_date > f.load_date));

-- name: statement_timeout
-- A bound on the time of the statements of the current transaction (ms, as text).
SELECT set_config('statement_timeout', %(ms)s, true);

-- name: naive_today
-- Today in the customer's time zone.
SELECT (now() AT TIME ZONE %(zone)s)::date;

-- name: naive_totals
-- The seven headline figures of the local days [start, end]: visitors, page views and events of
-- the events in the range; visits, bounce rate, duration and views per visit of the sessions that
-- start in it.
SELECT ev.visitors, vs.visits, ev.pageviews, ev.events,
       CASE WHEN vs.visits = 0 THEN 0 ELSE round(vs.visit_pageviews::numeric / vs.visits, 2) END AS views_per_visit,
       CASE WHEN vs.visits = 0 THEN 0 ELSE round(100 * vs.bounces::numeric / vs.visits, 1) END AS bounce_rate,
       CASE WHEN vs.visits = 0 THEN 0 ELSE round(vs.duration_seconds::numeric / vs.visits) END AS visit_duration
FROM (SELECT count(DISTINCT e.site_visitor_hk) AS visitors, count(*) FILTER (WHERE e.event_type = 'page_view') AS pageviews,
             count(*) AS events
      FROM naive.visit_event e
      WHERE e.tenant_hk = %(tenant)s
        AND e.session_start < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s
        AND e.session_end >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
        AND e.occurred_at >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
        AND e.occurred_at < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s) ev
CROSS JOIN (
      SELECT count(*) AS visits, count(*) FILTER (WHERE v.is_bounce) AS bounces,
             coalesce(sum(v.duration_seconds), 0) AS duration_seconds, coalesce(sum(v.page_views), 0) AS visit_pageviews
      FROM naive.visit v
      WHERE v.tenant_hk = %(tenant)s
        AND v.session_start >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
        AND v.session_start < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s) vs;

-- name: naive_timeseries
-- Visitors and page views of each local day or month (%(unit)s) of [start, end], zeros included.
SELECT b.bucket::date AS bucket, coalesce(x.visitors, 0) AS visitors, coalesce(x.pageviews, 0) AS pageviews
FROM generate_series(date_trunc(%(unit)s, %(start)s::date::timestamp), %(end)s::date::timestamp,
                     ('1 ' || %(unit)s)::interval) b(bucket)
LEFT JOIN (
    SELECT date_trunc(%(unit)s, e.occurred_at AT TIME ZONE %(zone)s) AS bucket,
           count(DISTINCT e.site_visitor_hk) AS visitors, count(*) FILTER (WHERE e.event_type = 'page_view') AS pageviews
    FROM naive.visit_event e
    WHERE e.tenant_hk = %(tenant)s
      AND e.session_start < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s
      AND e.session_end >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
      AND e.occurred_at >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
      AND e.occurred_at < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s
    GROUP BY 1
) x USING (bucket)
ORDER BY 1;

-- name: naive_event_values
-- The top values of one event attribute (the column in braces: page, type) over [start, end] by
-- visitors (those with an event of that value), with the figure in braces (page views, events) of
-- those events; ties by value, byte by byte (as the marts' text compares).
SELECT e.{value} AS value, count(DISTINCT e.site_visitor_hk) AS visitors, {figure} AS figure
FROM naive.visit_event e
WHERE e.tenant_hk = %(tenant)s
  AND e.session_start < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s
  AND e.session_end >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
  AND e.occurred_at >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
  AND e.occurred_at < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s
GROUP BY 1
ORDER BY visitors DESC, e.{value} COLLATE "C"
LIMIT %(limit)s;

-- name: naive_visit_values
-- The top values of one visit attribute (the column in braces) over [start, end] by visitors
-- (those with an event in the range in a session of that value), with the visits of that value
-- that start in the range; ties by value, byte by byte (as the marts' text compares).
SELECT coalesce(ev.value, vs.value) AS value, coalesce(ev.visitors, 0) AS visitors, coalesce(vs.visits, 0) AS visits
FROM (SELECT e.{value} AS value, count(DISTINCT e.site_visitor_hk) AS visitors
      FROM naive.visit_event e
      WHERE e.tenant_hk = %(tenant)s
        AND e.session_start < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s
        AND e.session_end >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
        AND e.occurred_at >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
        AND e.occurred_at < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s
      GROUP BY 1) ev
FULL JOIN (
      SELECT v.{value} AS value, count(*) AS visits
      FROM naive.visit v
      WHERE v.tenant_hk = %(tenant)s
        AND v.session_start >= %(start)s::date::timestamp AT TIME ZONE %(zone)s
        AND v.session_start < (%(end)s::date + 1)::timestamp AT TIME ZONE %(zone)s
      GROUP BY 1) vs ON vs.value = ev.value
ORDER BY 2 DESC, coalesce(ev.value, vs.value) COLLATE "C"
LIMIT %(limit)s;

-- name: naive_realtime
-- Distinct visitors of the sessions whose last event is at most %(seconds)s seconds old.
SELECT count(DISTINCT v.site_visitor_hk)
FROM naive.visit v
WHERE v.tenant_hk = %(tenant)s AND v.session_end >= now() - make_interval(secs => %(seconds)s);
