-- The SQL twin of POST /api/v1/track/async: stores one event for a tenant from psql.
CREATE FUNCTION api.track_site_event(
    p_customer_id text,
    p_page_url text,
    p_event_type text DEFAULT 'page_view',
    p_event_data jsonb DEFAULT '{}',
    p_client_ip inet DEFAULT NULL,
    p_user_agent text DEFAULT NULL,
    p_event_id text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant_hk bytea;
    v_active boolean;
    v_event_type text := coalesce(p_event_type, 'page_view');
    v_event_id text := coalesce(p_event_id, gen_random_uuid()::text);
    v_payload jsonb;
    v_result record;
BEGIN
    SELECT t.tenant_hk, t.is_active INTO v_tenant_hk, v_active
    FROM auth.tenant_current t WHERE t.customer_id = p_customer_id;
    IF v_tenant_hk IS NULL THEN
        RAISE EXCEPTION 'unknown customer id: %', p_customer_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT v_active THEN
        RAISE EXCEPTION 'customer % is disabled', p_customer_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF v_event_type !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION 'event_type must match [A-Za-z0-9_.:-]{1,64}' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_event_data IS NOT NULL AND jsonb_typeof(p_event_data) <> 'object' THEN
        RAISE EXCEPTION 'event_data must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(v_event_id) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'event_id must be 1 to 128 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Only what the caller gave: absent arguments stay absent, event_data is kept as is.
    v_payload := jsonb_build_object('event_type', v_event_type, 'event_data', coalesce(p_event_data, '{}'::jsonb))
        || CASE WHEN p_page_url IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('page_url', p_page_url) END
        || CASE WHEN p_event_id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('event_id', p_event_id) END;

    SELECT * INTO v_result
    FROM raw.ingest_site_events(
        ARRAY[v_tenant_hk], ARRAY[v_event_id], ARRAY[v_payload], ARRAY[p_user_agent], ARRAY[p_client_ip],
        ARRAY[clock_timestamp()], ARRAY['sql:api.track_site_event']
    );

    RETURN jsonb_build_object(
        'success', true,
        'event_id', v_event_id,
        'raw_event_id', v_result.raw_event_id,
        'duplicate', v_result.duplicate
    );
END;
$$;
