-- A customer's events for `onevault export` and GET /api/v1/export (export/stream.py), read through a
-- server-side cursor. Every statement reads one customer's rows: `tenant_hk = %(tenant_hk)s` is the
-- first predicate of the table it starts from, and the rest is reached by that table's keys.
-- The days [%(first_day)s, %(last_day)s] are UTC days. Times are UTC ISO 8601 text (util.iso_utc);
-- JSON columns stay jsonb, which the export reads as text and writes as it is.
-- Statements with placeholders in braces are templates composed with psycopg.sql (never braces in
-- a comment: they would be placeholders too).

-- name: raw_events
-- The events stored in the raw layer on those days (by the time they were received), as received:
-- the body as sent (the JSON object, a `token` never stored), its type as the pipeline reads it
-- (top level, else in event_data, else page_view) and where it stands in the pipeline. Left out: the
-- keyed hash of the client's IP (an installation secret's output, not the customer's data) and the
-- queue's bookkeeping (lane, retries, internal ids).
SELECT r.event_id,
       util.iso_utc(r.received_timestamp) AS received_at,
       coalesce(r.raw_payload ->> 'event_type', r.raw_payload -> 'event_data' ->> 'event_type', 'page_view')
           AS event_type,
       r.record_source,
       r.user_agent,
       r.processing_status,
       util.iso_utc(r.processed_at) AS processed_at,
       r.error_message,
       r.raw_payload AS payload
FROM raw.site_tracking_events_r r
WHERE r.tenant_hk = %(tenant_hk)s
  AND r.received_timestamp >= %(first_day)s::date::timestamp AT TIME ZONE 'UTC'
  AND r.received_timestamp < (%(last_day)s::date + 1)::timestamp AT TIME ZONE 'UTC'
ORDER BY r.received_timestamp, r.raw_event_id

-- name: business_events
-- The events in force in the business vault that occurred on those days: each event's latest
-- details row, its session in force (its latest effectivity row, else its only link) and the
-- visitor holding that session, by business keys. Read from the customer's sessions in force that
-- overlap the days (business.site_session_state), so a range is an index range of them.
SELECT h.site_event_bk AS event_id,
       util.iso_utc(d.occurred_at) AS occurred_at,
       util.iso_utc(d.received_at) AS received_at,
       d.event_type,
       d.page_url,
       d.referrer_url,
       d.referrer_host,
       d.referrer_class,
       d.utm_source,
       d.utm_medium,
       d.utm_campaign,
       d.utm_term,
       d.utm_content,
       d.user_id,
       d.language,
       d.screen_width,
       d.screen_height,
       d.viewport_width,
       d.viewport_height,
       d.is_bot,
       d.validation_status,
       d.quality_score::float8 AS quality_score,
       sh.site_session_bk AS session_key,
       vh.site_visitor_bk AS visitor_key,
       d.record_source,
       d.event_properties
FROM business.site_session_state s
JOIN business.site_session_h sh ON sh.site_session_hk = s.site_session_hk
LEFT JOIN business.site_visitor_h vh ON vh.site_visitor_hk = s.site_visitor_hk
JOIN business.site_event_session_l l ON l.site_session_hk = s.site_session_hk
JOIN business.site_event_h h ON h.site_event_hk = l.site_event_hk
CROSS JOIN LATERAL (SELECT x.* FROM business.site_event_details_s x
                    WHERE x.site_event_hk = l.site_event_hk
                    ORDER BY x.load_date DESC LIMIT 1) d
WHERE s.tenant_hk = %(tenant_hk)s
  AND s.session_start < (%(last_day)s::date + 1)::timestamp AT TIME ZONE 'UTC'
  AND s.session_end >= %(first_day)s::date::timestamp AT TIME ZONE 'UTC'
  AND d.occurred_at >= %(first_day)s::date::timestamp AT TIME ZONE 'UTC'
  AND d.occurred_at < (%(last_day)s::date + 1)::timestamp AT TIME ZONE 'UTC'
  -- The link is in force: the event has no effectivity row, or its latest names this session.
  AND coalesce((SELECT f.site_session_hk FROM business.site_event_session_eff_s f
                WHERE f.site_event_hk = l.site_event_hk
                ORDER BY f.load_date DESC LIMIT 1), l.site_session_hk) = l.site_session_hk
ORDER BY d.occurred_at, h.site_event_bk

-- name: count
-- How many rows the export statement in braces gives (for a progress bar).
SELECT count(*) FROM ({events}) AS e
