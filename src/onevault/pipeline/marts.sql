-- name: clear
-- Empties the customer's marts (mart.clear_tenant); the sessions that were counted.
SELECT mart.clear_tenant(%(tenant_hk)s::bytea);

-- name: rebuild_chunk
-- Refreshes the marts of the customer's next visitors after the key `after` (NULL: from the
-- first), at most `limit`: {"visitors": n, "sessions": n, "last": hex of the last visitor's key}.
SELECT mart.rebuild_visitors(%(tenant_hk)s::bytea, %(after)s::bytea, %(limit)s::integer);

-- name: counted
-- The customer's sessions and events the marts count after a rebuild.
SELECT count(*), coalesce(sum(events), 0) FROM mart.session_f WHERE tenant_hk = %(tenant_hk)s;
