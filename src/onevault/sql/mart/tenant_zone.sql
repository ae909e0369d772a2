-- A customer's time zone (`onevault tenant set-timezone`; UTC until one is set).
CREATE OR REPLACE FUNCTION mart.tenant_zone(p_tenant_hk bytea) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN coalesce((SELECT z.time_zone FROM auth.tenant_zone_s z
                     WHERE z.tenant_hk = p_tenant_hk ORDER BY z.load_date DESC LIMIT 1), 'UTC');
