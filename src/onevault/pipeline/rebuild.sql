-- name: tenant_key
-- The hash key of a registered customer (no row: unknown customer).
SELECT tenant_hk FROM auth.tenant_current WHERE customer_id = %(customer_id)s;

-- name: visitor_count
-- How many visitors a rebuild of the customer goes through (those of its staged, not quarantined events).
SELECT count(DISTINCT site_visitor_hk)
FROM staging.site_tracking_events_s
WHERE tenant_hk = %(tenant_hk)s AND validation_status <> 'INVALID';

-- name: rebuild_chunk
-- Rebuilds the customer's next visitors after the key `after` (NULL: from the first), at most `limit`:
-- {"visitors": n, "events": n, "last": hex of the last visitor's key, null when none was left}.
SELECT staging.rebuild_vault(%(tenant_hk)s::bytea, %(after)s::bytea, %(limit)s::integer);
