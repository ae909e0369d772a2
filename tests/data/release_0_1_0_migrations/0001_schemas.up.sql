-- The layers of the product, one schema each (util is created by the migration runner).
CREATE SCHEMA raw;
COMMENT ON SCHEMA raw IS 'Landing layer: every accepted event, verbatim, exactly as received';
CREATE SCHEMA staging;
COMMENT ON SCHEMA staging IS 'Validated, normalised and enriched events, and the pipeline automation';
CREATE SCHEMA business;
COMMENT ON SCHEMA business IS 'Data Vault 2.0 business layer: hubs, links, satellites';
CREATE SCHEMA api;
COMMENT ON SCHEMA api IS 'Entry points callable by operators from psql';
CREATE SCHEMA auth;
COMMENT ON SCHEMA auth IS 'Tenants and API tokens (tokens stored hashed only)';

-- Hash keys of the vault: SHA-256 of the tenant's customer id, and of the tenant hash key
-- followed by a business key, so equal business keys of two tenants never share a hash key.
CREATE FUNCTION util.tenant_hk(p_customer_id text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN sha256(convert_to(p_customer_id, 'UTF8'));

-- STABLE like convert_to, so the planner inlines it into the pipeline's statements (an IMMUTABLE
-- function calling a STABLE one is run as a separate function call per row).
CREATE FUNCTION util.hash_key(p_tenant_hk bytea, p_business_key text) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN sha256(p_tenant_hk || convert_to(p_business_key, 'UTF8'));

-- The secret that keys client IP hashes; generated once per installation, never leaves the database.
CREATE TABLE util.ip_hash_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    hash_key bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now()
);
INSERT INTO util.ip_hash_key (hash_key)
VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')));
REVOKE ALL ON util.ip_hash_key FROM PUBLIC;

-- The stored form of a client IP: SHA-256 keyed with util.ip_hash_key.hash_key (passed in, so a
-- statement hashing many IPs reads the key once).
CREATE FUNCTION util.hash_client_ip(p_client_ip inet, p_key bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN sha256(p_key || convert_to(host(p_client_ip), 'UTF8'));
