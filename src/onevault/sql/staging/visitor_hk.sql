-- The visitor hash key of an event, from what the client sent (visitor_id) or, without one, from
-- the derived visitor (staging.derived_visitor_id). Shared by staging and by the locks that
-- staging.process_batch takes before staging, so both name the same visitor.
-- requires: staging/derived_visitor_id.sql
-- requires: util/canon_id.sql
-- requires: util/derived_key.sql
-- requires: util/hash_key.sql
CREATE OR REPLACE FUNCTION staging.visitor_hk(
    p_tenant_hk bytea, p_visitor_in text, p_client_ip_hash bytea, p_user_agent text
) RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN util.canon_id(p_visitor_in) IS NOT NULL
                THEN util.hash_key(p_tenant_hk, util.canon_id(p_visitor_in))
                ELSE util.derived_key(p_tenant_hk,
                                      staging.derived_visitor_id(p_tenant_hk, p_client_ip_hash, p_user_agent)) END;
