-- Distinct user agents, not parsed yet, of the tenant's events the next run of these lanes will take
-- (the service parses them with ua-parser before the run: once per distinct agent, not per event).
-- The events are found in the queue first, then read from raw by id, bounded by the first and the
-- last (sorted) so that it reads only their days' partitions (an array of ids prunes none in a plan
-- kept for the next calls).
CREATE OR REPLACE FUNCTION staging.unparsed_user_agents(p_tenant_hk bytea, p_lanes smallint[], p_limit integer)
RETURNS SETOF text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ids bigint[] := ARRAY(SELECT q.raw_event_id FROM raw.event_queue q
                            WHERE q.tenant_hk = p_tenant_hk AND q.processing_lane = ANY (p_lanes)
                            ORDER BY q.raw_event_id LIMIT p_limit);
BEGIN
    RETURN QUERY
    SELECT DISTINCT r.user_agent
    FROM raw.site_tracking_events_r r
    WHERE r.raw_event_id = ANY (v_ids) AND r.raw_event_id BETWEEN v_ids[1] AND v_ids[cardinality(v_ids)]
      AND r.user_agent IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM staging.user_agent_parse p
                      WHERE p.user_agent_hk = sha256(convert_to(r.user_agent, 'UTF8')));
END;
$$;
