-- The upper bound (exclusive) of a partition of raw or staging, read from its partition bound.
CREATE OR REPLACE FUNCTION raw.partition_upper(p_partition regclass) RETURNS bigint
    LANGUAGE sql STABLE STRICT
    RETURN (SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''?([0-9]+)''?\)'))[1]::bigint
            FROM pg_class c WHERE c.oid = p_partition);
