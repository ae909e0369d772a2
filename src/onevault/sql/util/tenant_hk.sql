-- The tenant hash key of the vault: SHA-256 of the customer id.
CREATE OR REPLACE FUNCTION util.tenant_hk(p_customer_id text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN sha256(convert_to(p_customer_id, 'UTF8'));
