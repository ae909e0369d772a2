-- The stored form of a client IP: SHA-256 keyed with util.client_ip_key (passed in, so a statement
-- hashing many IPs reads the key once).
CREATE OR REPLACE FUNCTION util.hash_client_ip(p_client_ip inet, p_key bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN sha256(p_key || convert_to(host(p_client_ip), 'UTF8'));
