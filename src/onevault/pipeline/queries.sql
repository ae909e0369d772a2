-- name: unparsed_user_agents
-- Distinct user agents, not parsed yet, of the events the next run of these lanes will take.
SELECT staging.unparsed_user_agents(util.tenant_hk(%(customer_id)s), %(lanes)s::smallint[], %(batch_size)s);

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
-- periodic sweep's work list.
SELECT t.tenant_bk
FROM auth.tenant_h t
CROSS JOIN LATERAL ((SELECT 1 FROM raw.event_queue q
                     WHERE q.tenant_hk = t.tenant_hk
                       AND (q.processing_status = 'PENDING' OR q.next_attempt_at <= now())
                     LIMIT 1)
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
WHERE (SELECT q.received_timestamp FROM raw.event_queue q
       WHERE q.tenant_hk = t.tenant_hk AND q.processing_lane = ANY (%(lanes)s::smallint[])
         AND (q.processing_status = 'PENDING' OR q.next_attempt_at <= now())
       ORDER BY q.raw_event_id LIMIT 1) > now() - make_interval(secs => %(max_delay)s)
ON CONFLICT (tenant_hk, lane) DO UPDATE SET rest_until = EXCLUDED.rest_until;
