-- How many days after they end a customer keeps its sessions in the business layer and the marts
-- (`onevault tenant set-retention`): the latest setting; NULL (no setting, or `keep`) keeps them.
CREATE OR REPLACE FUNCTION auth.tenant_business_days(p_tenant_hk bytea) RETURNS integer
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT r.business_days FROM auth.tenant_retention_s r
            WHERE r.tenant_hk = p_tenant_hk ORDER BY r.load_date DESC LIMIT 1);
