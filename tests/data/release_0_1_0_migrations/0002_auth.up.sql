-- Tenants: a hub keyed by customer id and an insert-only satellite carrying its state.
CREATE TABLE auth.tenant_h (
    tenant_hk bytea PRIMARY KEY,
    tenant_bk text NOT NULL UNIQUE CHECK (tenant_bk ~ '^[a-z0-9_-]{2,64}$'),
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);

CREATE TABLE auth.tenant_s (
    tenant_hk bytea NOT NULL REFERENCES auth.tenant_h,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    hash_diff bytea NOT NULL,
    is_active boolean NOT NULL,
    display_name text,
    record_source text NOT NULL,
    PRIMARY KEY (tenant_hk, load_date)
);

-- API tokens: the hash key is the SHA-256 of the token itself, so the token is never stored.
CREATE TABLE auth.api_token_h (
    api_token_hk bytea PRIMARY KEY,
    tenant_hk bytea NOT NULL REFERENCES auth.tenant_h,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);

CREATE TABLE auth.api_token_s (
    api_token_hk bytea NOT NULL REFERENCES auth.api_token_h,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    hash_diff bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    scopes text[] NOT NULL CHECK (scopes <@ ARRAY['track', 'read', 'process'] AND cardinality(scopes) > 0),
    expires_at timestamptz,
    revoked_at timestamptz,
    description text,
    record_source text NOT NULL,
    PRIMARY KEY (api_token_hk, load_date)
);
CREATE INDEX api_token_h_tenant_idx ON auth.api_token_h (tenant_hk);

-- Current state of each tenant and token (the latest satellite row).
CREATE VIEW auth.tenant_current AS
SELECT h.tenant_hk, h.tenant_bk AS customer_id, s.is_active, s.display_name,
       h.load_date AS created_at, s.load_date AS updated_at
FROM auth.tenant_h h
JOIN LATERAL (
    SELECT * FROM auth.tenant_s x WHERE x.tenant_hk = h.tenant_hk ORDER BY x.load_date DESC LIMIT 1
) s ON true;

CREATE VIEW auth.api_token_current AS
SELECT h.api_token_hk, encode(substr(h.api_token_hk, 1, 6), 'hex') AS token_id, h.tenant_hk,
       s.scopes, s.expires_at, s.revoked_at, s.description, h.load_date AS created_at
FROM auth.api_token_h h
JOIN LATERAL (
    SELECT * FROM auth.api_token_s x WHERE x.api_token_hk = h.api_token_hk ORDER BY x.load_date DESC LIMIT 1
) s ON true;
