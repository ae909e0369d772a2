-- A size in CSS pixels sent by a client (a JSON number, 0 to 100,000), rounded; NULL otherwise.
-- A plain SQL expression, inlined by the planner.
CREATE OR REPLACE FUNCTION util.pixels(p_value jsonb) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN jsonb_typeof(p_value) = 'number' AND (p_value #>> '{}')::numeric BETWEEN 0 AND 100000
                THEN round((p_value #>> '{}')::numeric)::integer END;
