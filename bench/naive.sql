-- The naive baseline's statements (bench/naive.py): every one handles a single row, as the
-- reference design did. Not used by the service.

-- name: resolve_token
-- What a presented token (by hash) grants, looked up on every request.
SELECT t.customer_id, t.tenant_hk, t.is_active, k.scopes, k.expires_at, k.revoked_at
FROM auth.api_token_current k
JOIN auth.tenant_current t ON t.tenant_hk = k.tenant_hk
WHERE k.api_token_hk = %(token_hash)s;

-- name: insert_raw
-- One event into the raw layer; no row when the event id is already stored.
INSERT INTO raw.site_tracking_events_r
    (tenant_hk, event_id, raw_payload, received_timestamp, record_source, user_agent, client_ip_hash)
VALUES (%(tenant_hk)s, %(event_id)s, %(payload)s, clock_timestamp(), 'naive', %(user_agent)s,
        util.hash_client_ip(%(client_ip)s::inet, (SELECT hash_key FROM util.ip_hash_key)))
ON CONFLICT (tenant_hk, event_id) DO NOTHING
RETURNING raw_event_id;

-- name: existing_raw
-- The raw row already holding an event id.
SELECT raw_event_id FROM raw.site_tracking_events_r WHERE tenant_hk = %(tenant_hk)s AND event_id = %(event_id)s;

-- name: select_raw
-- One raw event, locked, so two processors of the same event serialise.
SELECT tenant_hk, event_id, raw_payload, received_timestamp, user_agent, client_ip_hash, record_source,
       processing_status
FROM raw.site_tracking_events_r
WHERE raw_event_id = %(raw_event_id)s
FOR UPDATE;

-- name: adjacent_session
-- The derived session of the visitor's staged event nearest before an event within 30 minutes,
-- else of the one nearest after it.
SELECT n.session_id
FROM ((SELECT s.session_id, 1 AS side FROM staging.site_tracking_events_s s
       WHERE s.site_visitor_hk = util.hash_key(%(tenant_hk)s, %(visitor_id)s) AND s.session_derived
         AND s.occurred_at BETWEEN %(occurred_at)s - interval '30 minutes' AND %(occurred_at)s
       ORDER BY s.occurred_at DESC LIMIT 1)
      UNION ALL
      (SELECT s.session_id, 2 AS side FROM staging.site_tracking_events_s s
       WHERE s.site_visitor_hk = util.hash_key(%(tenant_hk)s, %(visitor_id)s) AND s.session_derived
         AND s.occurred_at BETWEEN %(occurred_at)s AND %(occurred_at)s + interval '30 minutes'
       ORDER BY s.occurred_at LIMIT 1)) n
ORDER BY n.side
LIMIT 1;

-- name: insert_staging
-- One enriched event into staging, hash keys computed by the database.
INSERT INTO staging.site_tracking_events_s (
    raw_event_id, tenant_hk, event_id, record_source, validation_status, validation_reasons, quality_score,
    event_type, page_url, page_host, page_path, page_query, page_title,
    utm_source, utm_medium, utm_campaign, utm_term, utm_content,
    referrer_url, referrer_host, referrer_class,
    user_agent, browser_family, browser_version, os_family, os_version, device_type, is_bot,
    client_ip_hash, received_at, occurred_at, clock_skew_ms,
    session_id, session_derived, visitor_id, visitor_derived, user_id, event_properties,
    site_event_hk, site_session_hk, site_visitor_hk, site_page_hk, language,
    screen_width, screen_height, viewport_width, viewport_height)
VALUES (
    %(raw_event_id)s, %(tenant_hk)s, %(event_id)s, %(record_source)s, %(validation_status)s,
    %(validation_reasons)s, %(quality_score)s,
    %(event_type)s, %(page_url)s, %(page_host)s, %(page_path)s, %(page_query)s, %(page_title)s,
    %(utm_source)s, %(utm_medium)s, %(utm_campaign)s, %(utm_term)s, %(utm_content)s,
    %(referrer_url)s, %(referrer_host)s, staging.referrer_class(%(referrer_host)s, %(page_host)s),
    %(user_agent)s, %(browser_family)s, %(browser_version)s, %(os_family)s, %(os_version)s, %(device_type)s,
    %(is_bot)s, %(client_ip_hash)s, %(received_at)s, %(occurred_at)s, %(clock_skew_ms)s,
    %(session_id)s, %(session_derived)s, %(visitor_id)s, %(visitor_derived)s, %(user_id)s,
    %(event_properties)s,
    util.hash_key(%(tenant_hk)s, %(event_id)s), util.hash_key(%(tenant_hk)s, %(session_id)s),
    util.hash_key(%(tenant_hk)s, %(visitor_id)s), util.hash_key(%(tenant_hk)s, %(page_bk)s), %(language)s,
    %(screen_width)s, %(screen_height)s, %(viewport_width)s, %(viewport_height)s)
ON CONFLICT (raw_event_id) DO NOTHING
RETURNING site_event_hk, site_session_hk, site_visitor_hk, site_page_hk, referrer_class;

-- name: insert_visitor_hub
-- One visitor hub row.
INSERT INTO business.site_visitor_h (site_visitor_hk, site_visitor_bk, tenant_hk, record_source)
VALUES (%(hk)s, %(bk)s, %(tenant_hk)s, 'naive')
ON CONFLICT DO NOTHING;

-- name: insert_session_hub
-- One session hub row.
INSERT INTO business.site_session_h (site_session_hk, site_session_bk, tenant_hk, record_source)
VALUES (%(hk)s, %(bk)s, %(tenant_hk)s, 'naive')
ON CONFLICT DO NOTHING;

-- name: insert_page_hub
-- One page hub row.
INSERT INTO business.site_page_h (site_page_hk, site_page_bk, tenant_hk, record_source)
VALUES (%(hk)s, %(bk)s, %(tenant_hk)s, 'naive')
ON CONFLICT DO NOTHING;

-- name: insert_event_hub
-- One event hub row.
INSERT INTO business.site_event_h (site_event_hk, site_event_bk, tenant_hk, record_source)
VALUES (%(hk)s, %(bk)s, %(tenant_hk)s, 'naive')
ON CONFLICT DO NOTHING;

-- name: insert_event_session_link
-- One event–session link row.
INSERT INTO business.site_event_session_l (link_event_session_hk, site_event_hk, site_session_hk, tenant_hk,
                                           record_source)
VALUES (%(hk)s, %(event_hk)s, %(session_hk)s, %(tenant_hk)s, 'naive')
ON CONFLICT DO NOTHING;

-- name: insert_event_page_link
-- One event–page link row.
INSERT INTO business.site_event_page_l (link_event_page_hk, site_event_hk, site_page_hk, tenant_hk, record_source)
VALUES (%(hk)s, %(event_hk)s, %(page_hk)s, %(tenant_hk)s, 'naive')
ON CONFLICT DO NOTHING;

-- name: insert_session_visitor_link
-- One session–visitor link row.
INSERT INTO business.site_session_visitor_l (link_session_visitor_hk, site_session_hk, site_visitor_hk,
                                             tenant_hk, record_source)
VALUES (%(hk)s, %(session_hk)s, %(visitor_hk)s, %(tenant_hk)s, 'naive')
ON CONFLICT DO NOTHING;

-- name: insert_event_details
-- The details of one event, unless the event already has them.
INSERT INTO business.site_event_details_s (
    site_event_hk, hash_diff, tenant_hk, raw_event_id, event_type, occurred_at, received_at,
    page_url, referrer_url, referrer_host, referrer_class, utm_source, utm_medium, utm_campaign, utm_term,
    utm_content, user_id, is_bot, validation_status, quality_score, event_properties, record_source, language,
    screen_width, screen_height, viewport_width, viewport_height)
SELECT %(event_hk)s, %(hash_diff)s, %(tenant_hk)s, %(raw_event_id)s, %(event_type)s, %(occurred_at)s,
       %(received_at)s, %(page_url)s, %(referrer_url)s, %(referrer_host)s, %(referrer_class)s,
       %(utm_source)s, %(utm_medium)s, %(utm_campaign)s, %(utm_term)s, %(utm_content)s, %(user_id)s,
       %(is_bot)s, %(validation_status)s, %(quality_score)s, %(event_properties)s, 'naive', %(language)s,
       %(screen_width)s, %(screen_height)s, %(viewport_width)s, %(viewport_height)s
WHERE NOT EXISTS (SELECT 1 FROM business.site_event_details_s x WHERE x.site_event_hk = %(event_hk)s);

-- name: current_page_details
-- The latest details row of one page.
SELECT hash_diff, page_title FROM business.site_page_details_s
WHERE site_page_hk = %(page_hk)s ORDER BY load_date DESC LIMIT 1;

-- name: insert_page_details
-- A new details row of one page.
INSERT INTO business.site_page_details_s (site_page_hk, hash_diff, tenant_hk, page_host, page_path, page_title,
                                          record_source)
VALUES (%(page_hk)s, %(hash_diff)s, %(tenant_hk)s, %(page_host)s, %(page_path)s, %(page_title)s, 'naive');

-- name: current_visitor_details
-- The hash_diff of the latest details row of one visitor.
SELECT hash_diff FROM business.site_visitor_details_s
WHERE site_visitor_hk = %(visitor_hk)s ORDER BY load_date DESC LIMIT 1;

-- name: insert_visitor_details
-- A new details row of one visitor.
INSERT INTO business.site_visitor_details_s (site_visitor_hk, hash_diff, tenant_hk, user_id, browser_family,
                                             browser_version, os_family, os_version, device_type, is_bot,
                                             is_derived, record_source)
VALUES (%(visitor_hk)s, %(hash_diff)s, %(tenant_hk)s, %(user_id)s, %(browser_family)s, %(browser_version)s,
        %(os_family)s, %(os_version)s, %(device_type)s, %(is_bot)s, %(is_derived)s, 'naive');

-- name: session_aggregate
-- The summary of one session, recomputed from all of its events.
SELECT min(d.occurred_at) AS session_start,
       max(d.occurred_at) AS session_end,
       count(*) FILTER (WHERE d.event_type = 'page_view')::integer AS page_views,
       count(*)::integer AS event_count,
       (array_agg(d.page_url ORDER BY d.occurred_at, d.raw_event_id)
            FILTER (WHERE d.page_url IS NOT NULL))[1] AS entry_page,
       (array_agg(d.page_url ORDER BY d.occurred_at DESC, d.raw_event_id DESC)
            FILTER (WHERE d.page_url IS NOT NULL))[1] AS exit_page,
       bool_or(d.is_bot) AS is_bot,
       (array_agg(d.referrer_host ORDER BY d.occurred_at, d.raw_event_id))[1] AS referrer_host,
       (array_agg(d.referrer_class ORDER BY d.occurred_at, d.raw_event_id))[1] AS referrer_class,
       (array_agg(d.utm_source ORDER BY d.occurred_at, d.raw_event_id))[1] AS utm_source,
       (array_agg(d.utm_medium ORDER BY d.occurred_at, d.raw_event_id))[1] AS utm_medium,
       (array_agg(d.utm_campaign ORDER BY d.occurred_at, d.raw_event_id))[1] AS utm_campaign,
       (array_agg(d.utm_term ORDER BY d.occurred_at, d.raw_event_id))[1] AS utm_term,
       (array_agg(d.utm_content ORDER BY d.occurred_at, d.raw_event_id))[1] AS utm_content
FROM business.site_event_session_l l
JOIN business.site_event_details_s d ON d.site_event_hk = l.site_event_hk
WHERE l.site_session_hk = %(session_hk)s;

-- name: current_session_summary
-- The hash_diff of the latest summary row of one session.
SELECT hash_diff FROM business.site_session_summary_s
WHERE site_session_hk = %(session_hk)s ORDER BY load_date DESC LIMIT 1;

-- name: insert_session_summary
-- A new summary row of one session.
INSERT INTO business.site_session_summary_s (
    site_session_hk, hash_diff, tenant_hk, session_start, session_end, page_views, event_count,
    duration_seconds, entry_page, exit_page, is_bounce, is_bot, referrer_host, referrer_class, utm_source,
    utm_medium, utm_campaign, utm_term, utm_content, record_source)
VALUES (%(session_hk)s, %(hash_diff)s, %(tenant_hk)s, %(session_start)s, %(session_end)s, %(page_views)s,
        %(event_count)s, %(duration_seconds)s, %(entry_page)s, %(exit_page)s, %(is_bounce)s, %(is_bot)s,
        %(referrer_host)s, %(referrer_class)s, %(utm_source)s, %(utm_medium)s, %(utm_campaign)s, %(utm_term)s,
        %(utm_content)s, 'naive');

-- name: mark_staging_loaded
-- One staging row loaded into the business layer.
UPDATE staging.site_tracking_events_s SET business_loaded_at = clock_timestamp()
WHERE raw_event_id = %(raw_event_id)s;

-- name: mark_raw_processed
-- One raw event processed.
UPDATE raw.site_tracking_events_r
SET processing_status = 'PROCESSED', processed_at = clock_timestamp(), error_message = NULL, next_attempt_at = NULL
WHERE raw_event_id = %(raw_event_id)s;

-- name: mark_raw_failed
-- One raw event whose processing failed (the baseline does not retry it).
UPDATE raw.site_tracking_events_r
SET processing_status = 'ERROR', error_message = left(%(message)s, 1000), retry_count = retry_count + 1
WHERE raw_event_id = %(raw_event_id)s;
