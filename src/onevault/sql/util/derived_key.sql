-- The hash key of a business key the service derives itself (a derived visitor or session): its
-- own namespace, as no UTF-8 text contains the byte 0xFF, so no id a client sends can share it.
CREATE OR REPLACE FUNCTION util.derived_key(p_tenant_hk bytea, p_business_key text) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN sha256(p_tenant_hk || '\xff'::bytea || convert_to(p_business_key, 'UTF8'));
