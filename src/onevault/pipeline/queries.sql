-- name: unparsed_user_agents
-- Distinct user agents, not parsed yet, of the tenant's events the next run of these lanes will take
-- (hashed once per distinct agent, not once per event).
SELECT a.user_agent
FROM (SELECT DISTINCT r.user_agent
      FROM (SELECT y.user_agent FROM raw.site_tracking_events_r y
            WHERE y.tenant_hk = util.tenant_hk(%(customer_id)s) AND y.processing_lane = ANY (%(lanes)s::smallint[])
              AND y.processing_status <> 'PROCESSED'
            ORDER BY y.raw_event_id + 0  -- the pending index's order (see raw.site_tracking_events_r)
            LIMIT %(batch_size)s) r
      WHERE r.user_agent IS NOT NULL) a
WHERE NOT EXISTS (SELECT 1 FROM staging.user_agent_parse p
                  WHERE p.user_agent_hk = sha256(convert_to(a.user_agent, 'UTF8')));

-- name: save_user_agents
-- Stores parsed user agents (first parse wins).
INSERT INTO staging.user_agent_parse (user_agent_hk, browser_family, browser_version, os_family, os_version,
                                      device_type, is_bot, record_source)
SELECT sha256(convert_to(ua, 'UTF8')), bf, bv, osf, osv, dt, bot, 'ua-parser'
FROM unnest(%(user_agents)s::text[], %(browser_families)s::text[], %(browser_versions)s::text[],
            %(os_families)s::text[], %(os_versions)s::text[], %(device_types)s::text[], %(bots)s::boolean[])
     AS t(ua, bf, bv, osf, osv, dt, bot)
ON CONFLICT DO NOTHING;

-- name: auto_process
-- One bounded batch of a tenant's due events through the whole pipeline (automation layer).
SELECT staging.auto_process_if_needed(%(customer_id)s, %(batch_size)s, %(lanes)s::smallint[], %(wait)s,
                                      %(refresh_marts)s);

-- name: refresh_marts
-- The information marts of the sessions a run loaded, when due (staging.refresh_marts_if_due), in
-- a transaction of their own after the run's commit.
SELECT staging.refresh_marts_if_due(util.tenant_hk(%(customer_id)s), %(caught_up)s);

-- name: tenants_with_due_events
-- Customers having events waiting (or due for a retry), or sessions waiting for their marts: the
-- periodic sweep's work list. (A lateral first-due-event in the pending index's order, not EXISTS,
-- whose ORDER BY PostgreSQL drops: see raw.site_tracking_events_r.)
SELECT t.tenant_bk
FROM auth.tenant_h t
CROSS JOIN LATERAL ((SELECT 1 FROM raw.site_tracking_events_r r
                     WHERE r.tenant_hk = t.tenant_hk AND r.processing_status <> 'PROCESSED'
                       AND (r.processing_status = 'PENDING' OR r.next_attempt_at <= now())
                     ORDER BY r.raw_event_id + 0 LIMIT 1)
                    UNION ALL
                    (SELECT 1 FROM mart.session_queue p WHERE p.tenant_hk = t.tenant_hk LIMIT 1)
                    LIMIT 1) due;

-- name: event_outcome
-- Where one raw event stands after processing.
SELECT s.validation_status, s.validation_reasons, s.business_loaded_at IS NOT NULL AS loaded
FROM staging.site_tracking_events_s s
WHERE s.raw_event_id = %(raw_event_id)s;

-- name: requeue_failed
-- Failed and quarantined events of one customer (NULL: all) back to PENDING.
SELECT staging.requeue_failed(util.tenant_hk(%(customer_id)s::text));

-- name: resting
-- Seconds background processing of these lanes still rests (NULL: it does not).
SELECT extract(epoch FROM max(rest_until) - now())::float8
FROM staging.pipeline_rest
WHERE tenant_hk = util.tenant_hk(%(customer_id)s) AND lane = ANY (%(lanes)s::smallint[]) AND rest_until > now();

-- name: rest
-- Background processing of these lanes rests for %(seconds)s if they have due events, the oldest
-- of which has waited less than %(max_delay)s seconds.
INSERT INTO staging.pipeline_rest (tenant_hk, lane, rest_until)
SELECT t.tenant_hk, l.lane, now() + make_interval(secs => %(seconds)s)
FROM (SELECT util.tenant_hk(%(customer_id)s) AS tenant_hk) t
CROSS JOIN unnest(%(lanes)s::smallint[]) AS l(lane)
WHERE (SELECT r.received_timestamp FROM raw.site_tracking_events_r r
       WHERE r.tenant_hk = t.tenant_hk AND r.processing_lane = ANY (%(lanes)s::smallint[])
         AND r.processing_status <> 'PROCESSED'
         AND (r.processing_status = 'PENDING' OR r.next_attempt_at <= now())
       ORDER BY r.raw_event_id + 0  -- the pending index's order (see raw.site_tracking_events_r)
       LIMIT 1) > now() - make_interval(secs => %(max_delay)s)
ON CONFLICT (tenant_hk, lane) DO UPDATE SET rest_until = EXCLUDED.rest_until;
