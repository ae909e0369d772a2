-- The visitor id of an event that sent none: a keyed hash of the customer, the client's IP hash
-- and the user agent.
CREATE OR REPLACE FUNCTION staging.derived_visitor_id(p_tenant_hk bytea, p_client_ip_hash bytea, p_user_agent text)
RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN 'anon-' || left(encode(sha256(p_tenant_hk || coalesce(p_client_ip_hash, '\x'::bytea)
                                         || convert_to(coalesce(p_user_agent, ''), 'UTF8')), 'hex'), 32);
