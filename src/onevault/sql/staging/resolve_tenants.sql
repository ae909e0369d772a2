-- layer: automation
-- The tenants a call is about: one customer (which must exist) or, for NULL, every tenant.
CREATE OR REPLACE FUNCTION staging.resolve_tenants(p_customer_id text) RETURNS TABLE (tenant_hk bytea, customer_id text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_customer_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM auth.tenant_h h WHERE h.tenant_bk = p_customer_id) THEN
        RAISE EXCEPTION 'unknown customer id: %', p_customer_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT h.tenant_hk, h.tenant_bk FROM auth.tenant_h h
                 WHERE p_customer_id IS NULL OR h.tenant_bk = p_customer_id;
END;
$$;
