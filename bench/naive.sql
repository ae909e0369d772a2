-- The naive baseline's statements (bench/naive.py): every one handles a single row, as the
-- reference design did. Not used by the service.

-- name: resolve_token
-- What a presented token (by hash) grants, looked up on every request.
SELECT t.customer_id, t.tenant_hk, t.is_active, k.scopes, k.expires_at, k.revoked_at
FROM auth.api_token_current k
JOIN auth.tenant_current t ON t.tenant_hk = k.tenant_hk
WHERE k.api_token_hk = %(token_hash)s;

-- name: insert_raw
-- One event into the raw layer; no row when the event id is already stored (its idempotency key,
-- raw.event_key, is there).
WITH key AS (
    INSERT INTO raw.event_key (tenant_hk, event_id) VALUES (%(tenant_hk)s, %(event_id)s)
    ON CONFLICT (tenant_hk, event_id) DO NOTHING
    RETURNING raw_event_id
)
INSERT INTO raw.site_tracking_events_r
    (raw_event_id, tenant_hk, event_id, raw_payload, received_timestamp, record_source, user_agent, client_ip_hash)
SELECT key.raw_event_id, %(tenant_hk)s, %(event_id)s, %(payload)s, clock_timestamp(), 'naive', %(user_agent)s,
       util.hash_client_ip(%(client_ip)s::inet, util.client_ip_key(clock_timestamp()))
FROM key
RETURNING raw_event_id;

-- name: existing_raw
-- The raw row already holding an event id.
SELECT raw_event_id FROM raw.event_key WHERE tenant_hk = %(tenant_hk)s AND event_id = %(event_id)s;

-- name: select_raw
-- One raw event, locked, so two processors of the same event serialise.
SELECT tenant_hk, event_id, raw_payload, received_timestamp, user_agent, client_ip_hash, record_source,
       processing_status, processing_lane
FROM raw.site_tracking_events_r
WHERE raw_event_id = %(raw_event_id)s
FOR UPDATE;

-- name: lock_lane
-- The event's lane, held to the end of the transaction, as staging.process_batch holds it.
SELECT pg_advisory_xact_lock(7071, hashtext(encode(%(tenant_hk)s, 'hex') || '/' || %(lane)s));

-- name: load_date
-- The load date of one event's business rows, taken once, after its locks.
SELECT clock_timestamp();

-- name: nearest_session_before
-- The derived session of the visitor's staged event nearest before an event, within 30 minutes.
SELECT s.site_session_hk FROM staging.site_tracking_events_s s
WHERE s.site_visitor_hk = %(visitor_hk)s AND s.session_derived
  AND s.occurred_at BETWEEN %(occurred_at)s - interval '30 minutes' AND %(occurred_at)s
ORDER BY s.occurred_at DESC
LIMIT 1;

-- name: nearest_session_after
-- The derived session of the visitor's staged event nearest after an event, within 30 minutes.
SELECT s.site_session_hk FROM staging.site_tracking_events_s s
WHERE s.site_visitor_hk = %(visitor_hk)s AND s.session_derived
  AND s.occurred_at BETWEEN %(occurred_at)s AND %(occurred_at)s + interval '30 minutes'
ORDER BY s.occurred_at
LIMIT 1;

-- name: session_span
-- When one staged session starts and ends.
SELECT min(s.occurred_at), max(s.occurred_at) FROM staging.site_tracking_events_s s
WHERE s.site_session_hk = %(session_hk)s;

-- name: visitor_timeline
-- The visitor's staged events without a client session within a time span.
SELECT s.raw_event_id, s.occurred_at, s.site_event_hk, s.site_session_hk, s.visitor_id
FROM staging.site_tracking_events_s s
WHERE s.site_visitor_hk = %(visitor_hk)s AND s.session_derived AND s.occurred_at BETWEEN %(first_at)s AND %(last_at)s;

-- name: move_staged_event
-- One staged event re-assigned to the derived session it is in on the visitor's timeline now.
UPDATE staging.site_tracking_events_s SET session_id = %(session_id)s, site_session_hk = %(session_hk)s
WHERE raw_event_id = %(raw_event_id)s;

-- name: insert_staging
-- One enriched event into staging, hash keys computed by the baseline.
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
    %(event_hk)s, %(session_hk)s, %(visitor_hk)s, %(page_hk)s, %(language)s,
    %(screen_width)s, %(screen_height)s, %(viewport_width)s, %(viewport_height)s)
ON CONFLICT (raw_event_id) DO NOTHING
RETURNING referrer_class;

-- name: insert_page_hub
-- One page hub row.
INSERT INTO business.site_page_h (site_page_hk, site_page_bk, tenant_hk, load_date, record_source)
VALUES (%(hk)s, %(bk)s, %(tenant_hk)s, %(load_date)s, %(source)s)
ON CONFLICT DO NOTHING;

-- name: lock_page
-- One page hub row locked: pages are shared by every visitor, their hub rows lock their details.
SELECT 1 FROM business.site_page_h WHERE site_page_hk = %(page_hk)s FOR NO KEY UPDATE;

-- name: insert_visitor_hub
-- One visitor hub row, locked (lanes may share a visitor: its hub row locks its details).
INSERT INTO business.site_visitor_h AS h (site_visitor_hk, site_visitor_bk, tenant_hk, load_date, record_source)
VALUES (%(hk)s, %(bk)s, %(tenant_hk)s, %(load_date)s, %(source)s)
ON CONFLICT (site_visitor_hk) DO UPDATE SET load_date = h.load_date WHERE false;

-- name: insert_session_hub
-- One session hub row.
INSERT INTO business.site_session_h (site_session_hk, site_session_bk, tenant_hk, load_date, record_source)
VALUES (%(hk)s, %(bk)s, %(tenant_hk)s, %(load_date)s, %(source)s)
ON CONFLICT DO NOTHING;

-- name: insert_event_hub
-- One event hub row; a row back when the event is new.
INSERT INTO business.site_event_h (site_event_hk, site_event_bk, tenant_hk, load_date, record_source)
VALUES (%(hk)s, %(bk)s, %(tenant_hk)s, %(load_date)s, %(source)s)
ON CONFLICT DO NOTHING
RETURNING site_event_hk;

-- name: insert_event_session_link
-- One event–session link row (of a new event, or of an event moved to another session).
INSERT INTO business.site_event_session_l (link_event_session_hk, site_event_hk, site_session_hk, tenant_hk,
                                           load_date, record_source)
VALUES (%(hk)s, %(event_hk)s, %(session_hk)s, %(tenant_hk)s, %(load_date)s, %(source)s)
ON CONFLICT DO NOTHING;

-- name: insert_event_page_link
-- One event–page link row (the ghost page's zero key for an event without page).
INSERT INTO business.site_event_page_l (link_event_page_hk, site_event_hk, site_page_hk, tenant_hk, load_date,
                                        record_source)
VALUES (%(hk)s, %(event_hk)s, %(page_hk)s, %(tenant_hk)s, %(load_date)s, %(source)s);

-- name: insert_session_visitor_link
-- One session–visitor link row.
INSERT INTO business.site_session_visitor_l (link_session_visitor_hk, site_session_hk, site_visitor_hk,
                                             tenant_hk, load_date, record_source)
VALUES (%(hk)s, %(session_hk)s, %(visitor_hk)s, %(tenant_hk)s, %(load_date)s, %(source)s)
ON CONFLICT DO NOTHING;

-- name: insert_event_details
-- The details of one new event.
INSERT INTO business.site_event_details_s (
    site_event_hk, load_date, hash_diff, tenant_hk, raw_event_id, event_type, occurred_at, received_at,
    page_url, referrer_url, referrer_host, referrer_class, utm_source, utm_medium, utm_campaign, utm_term,
    utm_content, user_id, is_bot, validation_status, quality_score, event_properties, record_source, language,
    screen_width, screen_height, viewport_width, viewport_height)
VALUES (%(event_hk)s, %(load_date)s,
        util.hash_diff(%(event_type)s, util.iso_utc(%(occurred_at)s), %(page_url)s, %(referrer_url)s,
                       %(user_id)s, %(event_properties)s::text),
        %(tenant_hk)s, %(raw_event_id)s, %(event_type)s, %(occurred_at)s, %(received_at)s, %(page_url)s,
        %(referrer_url)s, %(referrer_host)s, %(referrer_class)s, %(utm_source)s, %(utm_medium)s,
        %(utm_campaign)s, %(utm_term)s, %(utm_content)s, %(user_id)s, %(is_bot)s, %(validation_status)s,
        %(quality_score)s, %(event_properties)s, %(source)s, %(language)s, %(screen_width)s, %(screen_height)s,
        %(viewport_width)s, %(viewport_height)s);

-- name: insert_page_details
-- A details row of one page at the event's time, unless the page's state just before it is the same.
INSERT INTO business.site_page_details_s (site_page_hk, applied_date, load_date, hash_diff, tenant_hk, page_host,
                                          page_path, page_title, record_source)
SELECT %(page_hk)s, %(occurred_at)s, %(load_date)s, n.hash_diff, %(tenant_hk)s, %(page_host)s, %(page_path)s,
       %(page_title)s, %(source)s
FROM (SELECT util.hash_diff(%(page_host)s, %(page_path)s, %(page_title)s) AS hash_diff) n
WHERE n.hash_diff IS DISTINCT FROM (SELECT x.hash_diff FROM business.site_page_details_s x
                                    WHERE x.site_page_hk = %(page_hk)s AND x.applied_date <= %(occurred_at)s
                                    ORDER BY x.applied_date DESC, x.load_date DESC LIMIT 1);

-- name: insert_visitor_details
-- A details row of one visitor at the event's time, unless the visitor's state just before it is the same.
INSERT INTO business.site_visitor_details_s (site_visitor_hk, applied_date, load_date, hash_diff, tenant_hk,
                                             user_id, browser_family, browser_version, os_family, os_version,
                                             device_type, is_bot, is_derived, record_source)
SELECT %(visitor_hk)s, %(occurred_at)s, %(load_date)s, n.hash_diff, %(tenant_hk)s, %(user_id)s,
       %(browser_family)s, %(browser_version)s, %(os_family)s, %(os_version)s, %(device_type)s, %(is_bot)s,
       %(visitor_derived)s, %(source)s
FROM (SELECT util.hash_diff(%(user_id)s, %(browser_family)s, %(browser_version)s, %(os_family)s,
                            %(os_version)s, %(device_type)s, %(is_bot)s::text, %(visitor_derived)s::text)
             AS hash_diff) n
WHERE n.hash_diff IS DISTINCT FROM (SELECT x.hash_diff FROM business.site_visitor_details_s x
                                    WHERE x.site_visitor_hk = %(visitor_hk)s AND x.applied_date <= %(occurred_at)s
                                    ORDER BY x.applied_date DESC, x.load_date DESC LIMIT 1);

-- name: moved_event
-- A staged event moved to another derived session: its keys, record source and the session it was in.
SELECT s.site_event_hk, s.site_session_hk, s.tenant_hk, substr(s.record_source, 9),
       coalesce((SELECT e.site_session_hk FROM business.site_event_session_eff_s e
                 WHERE e.site_event_hk = s.site_event_hk ORDER BY e.load_date DESC LIMIT 1),
                (SELECT l.site_session_hk FROM business.site_event_session_l l
                 WHERE l.site_event_hk = s.site_event_hk ORDER BY l.load_date DESC LIMIT 1))
FROM staging.site_tracking_events_s s
WHERE s.raw_event_id = %(raw_event_id)s;

-- name: insert_event_session_eff
-- The session one moved event is in from this load on.
INSERT INTO business.site_event_session_eff_s (site_event_hk, load_date, link_event_session_hk, site_session_hk,
                                               tenant_hk, record_source)
VALUES (%(event_hk)s, %(load_date)s, %(hk)s, %(session_hk)s, %(tenant_hk)s, %(source)s);

-- name: session_events
-- The loadable staged events of one session, the summary's input.
SELECT s.occurred_at, s.site_event_hk, s.event_type, s.page_url, s.is_bot, s.referrer_host, s.referrer_class,
       s.utm_source, s.utm_medium, s.utm_campaign, s.utm_term, s.utm_content,
       substr(s.record_source, 9) AS record_source,
       s.site_visitor_hk, s.tenant_hk
FROM staging.site_tracking_events_s s
WHERE s.site_session_hk = %(session_hk)s AND s.validation_status <> 'INVALID';

-- name: current_session_summary
-- The latest summary row of one session.
SELECT hash_diff, tenant_hk, session_start, session_end, page_views, event_count, entry_page, exit_page, is_bot,
       referrer_host, referrer_class, utm_source, utm_medium, utm_campaign, utm_term, utm_content, record_source,
       in_force
FROM business.site_session_summary_s
WHERE site_session_hk = %(session_hk)s
ORDER BY load_date DESC
LIMIT 1;

-- name: insert_session_summary
-- A summary row of one session, unless it is the same as the latest.
INSERT INTO business.site_session_summary_s (
    site_session_hk, load_date, hash_diff, tenant_hk, session_start, session_end, page_views, event_count,
    duration_seconds, entry_page, exit_page, is_bounce, is_bot, referrer_host, referrer_class, utm_source,
    utm_medium, utm_campaign, utm_term, utm_content, record_source, in_force)
SELECT %(session_hk)s, %(load_date)s, n.hash_diff, %(tenant_hk)s, %(session_start)s, %(session_end)s,
       %(page_views)s, %(event_count)s,
       extract(epoch FROM %(session_end)s::timestamptz - %(session_start)s::timestamptz)::integer, %(entry_page)s,
       %(exit_page)s, %(page_views)s <= 1, %(is_bot)s, %(referrer_host)s, %(referrer_class)s, %(utm_source)s,
       %(utm_medium)s, %(utm_campaign)s, %(utm_term)s, %(utm_content)s, %(record_source)s, %(in_force)s
FROM (SELECT util.hash_diff(util.iso_utc(%(session_start)s), util.iso_utc(%(session_end)s),
                            %(page_views)s::text, %(event_count)s::text, %(entry_page)s, %(exit_page)s,
                            %(is_bot)s::text, %(referrer_host)s, %(referrer_class)s, %(utm_source)s,
                            %(utm_medium)s, %(utm_campaign)s, %(utm_term)s, %(utm_content)s, %(in_force)s::text)
             AS hash_diff) n
WHERE n.hash_diff IS DISTINCT FROM %(previous_hash_diff)s;

-- name: current_session_holder
-- The visitor holding one session, by effectivity.
SELECT site_visitor_hk FROM business.site_session_visitor_eff_s
WHERE site_session_hk = %(session_hk)s
ORDER BY load_date DESC
LIMIT 1;

-- name: insert_session_visitor_eff
-- The visitor holding one session from this load on: that of its latest event.
INSERT INTO business.site_session_visitor_eff_s (site_session_hk, load_date, applied_date, link_session_visitor_hk,
                                                 site_visitor_hk, tenant_hk, record_source)
VALUES (%(session_hk)s, %(load_date)s, %(applied_date)s, %(hk)s, %(visitor_hk)s, %(tenant_hk)s, %(source)s);

-- name: mark_staging_loaded
-- One staging row loaded into the business layer.
UPDATE staging.site_tracking_events_s SET business_loaded_at = clock_timestamp()
WHERE raw_event_id = %(raw_event_id)s;

-- name: mark_raw_processed
-- One raw event processed, and off the queue.
WITH unqueued AS (
    DELETE FROM raw.event_queue WHERE tenant_hk = %(tenant_hk)s AND raw_event_id = %(raw_event_id)s
)
UPDATE raw.site_tracking_events_r
SET processing_status = 'PROCESSED', processed_at = clock_timestamp(), error_message = NULL, next_attempt_at = NULL
WHERE raw_event_id = %(raw_event_id)s;

-- name: mark_raw_failed
-- One raw event whose processing failed (the baseline does not retry it).
UPDATE raw.site_tracking_events_r
SET processing_status = 'ERROR', error_message = left(%(message)s, 1000), retry_count = retry_count + 1
WHERE raw_event_id = %(raw_event_id)s;
