DROP FUNCTION util.hash_client_ip(inet, bytea);
DROP TABLE util.ip_hash_key;
DROP FUNCTION util.hash_key(bytea, text);
DROP FUNCTION util.tenant_hk(text);
DROP SCHEMA auth;
DROP SCHEMA api;
DROP SCHEMA business;
DROP SCHEMA staging;
DROP SCHEMA raw;
