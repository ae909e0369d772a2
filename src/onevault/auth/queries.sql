-- name: create_tenant
-- Registers a tenant (active); returns no row when the customer id is taken.
WITH hub AS (
    INSERT INTO auth.tenant_h (tenant_hk, tenant_bk, record_source)
    VALUES (util.tenant_hk(%(customer_id)s), %(customer_id)s, %(record_source)s)
    ON CONFLICT DO NOTHING
    RETURNING tenant_hk
)
INSERT INTO auth.tenant_s (tenant_hk, hash_diff, is_active, display_name, record_source)
SELECT tenant_hk, sha256(convert_to('true|' || coalesce(%(display_name)s, ''), 'UTF8')), true,
       %(display_name)s, %(record_source)s
FROM hub
RETURNING tenant_hk;

-- name: set_tenant_active
-- Adds a satellite row when the tenant's active flag changes; returns the tenant if it exists.
WITH cur AS (
    SELECT tenant_hk, is_active, display_name FROM auth.tenant_current WHERE customer_id = %(customer_id)s
), ins AS (
    INSERT INTO auth.tenant_s (tenant_hk, hash_diff, is_active, display_name, record_source)
    SELECT tenant_hk, sha256(convert_to(%(is_active)s::text || '|' || coalesce(display_name, ''), 'UTF8')),
           %(is_active)s, display_name, %(record_source)s
    FROM cur
    WHERE is_active IS DISTINCT FROM %(is_active)s
)
SELECT tenant_hk FROM cur;

-- name: list_tenants
-- Every tenant with its state and number of live tokens.
SELECT t.customer_id, t.is_active, t.created_at,
       (SELECT count(*) FROM auth.api_token_current k
        WHERE k.tenant_hk = t.tenant_hk AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now())) AS live_tokens,
       ARRAY(SELECT o.origin FROM auth.tenant_origin_current o WHERE o.tenant_hk = t.tenant_hk
             ORDER BY o.origin) AS allowed_origins,
       auth.tenant_respects_privacy(t.tenant_hk) AS respects_dnt,
       auth.tenant_business_days(t.tenant_hk) AS business_days
FROM auth.tenant_current t
ORDER BY t.customer_id;

-- name: create_token
-- Stores a new token by its hash for an existing tenant; returns no row for an unknown tenant.
WITH tenant AS (
    SELECT tenant_hk FROM auth.tenant_current WHERE customer_id = %(customer_id)s
), hub AS (
    INSERT INTO auth.api_token_h (api_token_hk, tenant_hk, record_source)
    SELECT %(token_hash)s, tenant_hk, %(record_source)s FROM tenant
    RETURNING api_token_hk, tenant_hk
)
INSERT INTO auth.api_token_s (api_token_hk, hash_diff, tenant_hk, scopes, expires_at, description, record_source)
SELECT api_token_hk,
       sha256(convert_to(array_to_string(%(scopes)s::text[], ',') || '|' || coalesce(%(expires_at)s::timestamptz::text, ''), 'UTF8')),
       tenant_hk, %(scopes)s::text[], %(expires_at)s::timestamptz, %(description)s, %(record_source)s
FROM hub
RETURNING encode(substr(api_token_hk, 1, 6), 'hex') AS token_id;

-- name: list_tokens
-- Token metadata (never the token) for one tenant or all.
SELECT k.token_id, t.tenant_bk AS customer_id, k.scopes, k.created_at, k.expires_at, k.revoked_at, k.description
FROM auth.api_token_current k
JOIN auth.tenant_h t ON t.tenant_hk = k.tenant_hk
WHERE %(customer_id)s::text IS NULL OR t.tenant_bk = %(customer_id)s
ORDER BY t.tenant_bk, k.created_at;

-- name: revoke_token
-- Marks a token revoked by its id (a prefix of its hash); returns the ids that matched.
WITH target AS (
    SELECT * FROM auth.api_token_current WHERE token_id = %(token_id)s
), ins AS (
    INSERT INTO auth.api_token_s (api_token_hk, hash_diff, tenant_hk, scopes, expires_at, revoked_at,
                                  description, record_source)
    SELECT api_token_hk, sha256(convert_to('revoked|' || api_token_hk::text, 'UTF8')), tenant_hk, scopes,
           expires_at, clock_timestamp(), description, %(record_source)s
    FROM target
    WHERE revoked_at IS NULL
)
SELECT token_id, revoked_at IS NOT NULL AS already_revoked FROM target;

-- name: set_origin
-- Records that a tenant allows (or no longer allows) an origin, when that changes; returns the
-- tenant (no row: unknown customer) and whether anything changed.
WITH tenant AS (
    SELECT tenant_hk FROM auth.tenant_current WHERE customer_id = %(customer_id)s
), ins AS (
    INSERT INTO auth.tenant_origin_s (tenant_hk, origin, is_allowed, record_source)
    SELECT tenant.tenant_hk, %(origin)s, %(allowed)s, %(record_source)s
    FROM tenant
    WHERE %(allowed)s IS DISTINCT FROM EXISTS (
        SELECT 1 FROM auth.tenant_origin_current o WHERE o.tenant_hk = tenant.tenant_hk AND o.origin = %(origin)s)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ins) AS changed FROM tenant;

-- name: resolve_token
-- What a presented token (by hash) grants, if it exists, with the origins its tenant allows and
-- whether it honours browsers' privacy signals.
SELECT t.customer_id, t.tenant_hk, t.is_active, k.scopes, k.expires_at, k.revoked_at,
       ARRAY(SELECT o.origin FROM auth.tenant_origin_current o WHERE o.tenant_hk = t.tenant_hk) AS origins,
       auth.tenant_respects_privacy(t.tenant_hk) AS respects_privacy
FROM auth.api_token_current k
JOIN auth.tenant_current t ON t.tenant_hk = k.tenant_hk
WHERE k.api_token_hk = %(token_hash)s;

-- name: set_time_zone
-- Records a tenant's time zone (an IANA name PostgreSQL knows, in its canonical spelling) when
-- it changes; returns the canonical name (NULL: unknown zone) and whether anything changed (no
-- row: unknown customer).
WITH tenant AS (
    SELECT tenant_hk FROM auth.tenant_current WHERE customer_id = %(customer_id)s
), zone AS (
    SELECT min(z.name) AS name FROM pg_timezone_names z WHERE lower(z.name) = lower(%(time_zone)s)
), ins AS (
    INSERT INTO auth.tenant_zone_s (tenant_hk, time_zone, record_source)
    SELECT tenant.tenant_hk, zone.name, %(record_source)s
    FROM tenant, zone
    WHERE zone.name IS NOT NULL AND zone.name IS DISTINCT FROM mart.tenant_zone(tenant.tenant_hk)
    RETURNING 1
)
SELECT zone.name, EXISTS (SELECT 1 FROM ins) AS changed FROM tenant, zone;

-- name: set_privacy
-- Records whether a tenant honours browsers' privacy signals when that changes; returns whether
-- anything changed (no row: unknown customer).
WITH tenant AS (
    SELECT tenant_hk FROM auth.tenant_current WHERE customer_id = %(customer_id)s
), ins AS (
    INSERT INTO auth.tenant_privacy_s (tenant_hk, respect_signals, record_source)
    SELECT tenant.tenant_hk, %(respect)s, %(record_source)s
    FROM tenant
    WHERE auth.tenant_respects_privacy(tenant.tenant_hk) IS DISTINCT FROM %(respect)s
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ins) AS changed FROM tenant;

-- name: set_retention
-- Records how many days after they end a tenant keeps its sessions in the business layer (NULL:
-- keep them) when that changes; returns whether anything changed (no row: unknown customer).
WITH tenant AS (
    SELECT tenant_hk FROM auth.tenant_current WHERE customer_id = %(customer_id)s
), ins AS (
    INSERT INTO auth.tenant_retention_s (tenant_hk, business_days, record_source)
    SELECT tenant.tenant_hk, %(business_days)s::integer, %(record_source)s
    FROM tenant
    WHERE auth.tenant_business_days(tenant.tenant_hk) IS DISTINCT FROM %(business_days)s::integer
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ins) AS changed FROM tenant;
