-- The advisory lock key of a hash key: its first 64 bits.
CREATE OR REPLACE FUNCTION util.lock_key(p_hash_key bytea) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ('x' || encode(substr(p_hash_key, 1, 8), 'hex'))::bit(64)::bigint;
