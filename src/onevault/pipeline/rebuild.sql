-- name: tenant_key
-- The hash key of a registered customer (no row: unknown customer).
SELECT tenant_hk FROM auth.tenant_current WHERE customer_id = %(customer_id)s;

-- name: visitor_count
-- How many visitors a rebuild of the customer goes through (its visitor hubs, as staging.rebuild_vault).
SELECT count(*) FROM business.site_visitor_h WHERE tenant_hk = %(tenant_hk)s;

-- name: rebuild_chunk
-- Rebuilds the customer's next visitors after the key `after` (NULL: from the first), at most `limit`:
-- {"visitors": n, "events": n, "last": hex of the last visitor's key, null when none was left}.
SELECT staging.rebuild_vault(%(tenant_hk)s::bytea, %(after)s::bytea, %(limit)s::integer);
