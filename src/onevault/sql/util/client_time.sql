-- A timestamp sent by a client: ISO 8601 text or epoch milliseconds; NULL when unreadable.
-- Text without a zone or offset is UTC (never the session's TimeZone).
CREATE OR REPLACE FUNCTION util.client_time(p_value jsonb) RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE jsonb_typeof(p_value)
        WHEN 'number' THEN CASE WHEN abs((p_value #>> '{}')::numeric) < 1e14
                                THEN to_timestamp((p_value #>> '{}')::numeric / 1000.0) END
        WHEN 'string' THEN CASE WHEN p_value #>> '{}' ~ '^\d{4}-\d{2}-\d{2}'
                                 AND pg_input_is_valid(p_value #>> '{}', 'timestamptz')
                                THEN CASE WHEN substr(p_value #>> '{}', 11)
                                               ~* '\d\s*(z|[+-]\d{1,2}(:?\d{2})?|[a-z][a-z0-9/_+-]*)\s*$'
                                          THEN (p_value #>> '{}')::timestamptz
                                          ELSE (p_value #>> '{}')::timestamp AT TIME ZONE 'UTC' END END
    END;
