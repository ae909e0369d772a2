-- A hash key of the vault: SHA-256 of the tenant hash key followed by a business key, so equal
-- business keys of two tenants never share a hash key.
-- STABLE like convert_to, so the planner inlines it into the pipeline's statements (an IMMUTABLE
-- function calling a STABLE one is run as a separate function call per row).
CREATE OR REPLACE FUNCTION util.hash_key(p_tenant_hk bytea, p_business_key text) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN sha256(p_tenant_hk || convert_to(p_business_key, 'UTF8'));
