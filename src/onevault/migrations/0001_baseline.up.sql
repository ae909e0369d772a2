-- The schema of OneVault's first release: every table, index and grant (functions and views
-- live in src/onevault/sql/, applied after the migrations).

-- The layers of the product, one schema each (util is created by the migration runner).
CREATE SCHEMA raw;
COMMENT ON SCHEMA raw IS 'Landing layer: every accepted event, verbatim, exactly as received';

CREATE SCHEMA staging;
COMMENT ON SCHEMA staging IS 'Validated, normalised and enriched events, and the pipeline automation';

CREATE SCHEMA business;
COMMENT ON SCHEMA business IS 'Data Vault 2.0 business layer: hubs, links, satellites';

CREATE SCHEMA api;
COMMENT ON SCHEMA api IS 'Entry points callable by operators from psql';

CREATE SCHEMA auth;
COMMENT ON SCHEMA auth IS 'Tenants and API tokens (tokens stored hashed only)';

-- The secret that keys client IP hashes; generated once per installation, never leaves the database.
CREATE TABLE util.ip_hash_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    hash_key bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now()
);
INSERT INTO util.ip_hash_key (hash_key)
VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')));
REVOKE ALL ON util.ip_hash_key FROM PUBLIC;

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

-- The raw landing table: one row per accepted event, the event verbatim, nothing derived.
-- No foreign key to auth.tenant_h: events come only from callers resolved to a tenant (tenants
-- are never deleted), and the per-row check, with its share lock on the tenant's row taken by
-- every concurrent writer, cost a fifth of batch ingestion's throughput.
CREATE TABLE raw.site_tracking_events_r (
    raw_event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_hk bytea NOT NULL,
    event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 128),
    raw_payload jsonb NOT NULL CHECK (jsonb_typeof(raw_payload) = 'object'),
    received_timestamp timestamptz NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL,
    user_agent text,
    client_ip_hash bytea,
    processing_status text NOT NULL DEFAULT 'PENDING'
        CHECK (processing_status IN ('PENDING', 'PROCESSED', 'ERROR')),
    error_message text,
    retry_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    processed_at timestamptz,
    -- Events of one visitor (and of one client session) share a lane: see raw.processing_lane.
    processing_lane smallint NOT NULL DEFAULT 0 CHECK (processing_lane BETWEEN 0 AND 7),
    CONSTRAINT site_tracking_events_r_event_id_key UNIQUE (tenant_hk, event_id)
);
COMMENT ON COLUMN raw.site_tracking_events_r.event_id IS
    'Idempotency key per tenant: the client''s event_id, or a UUID given at ingestion';
COMMENT ON COLUMN raw.site_tracking_events_r.client_ip_hash IS
    'SHA-256 of the client IP keyed with util.ip_hash_key; the IP itself is never stored';

-- The queue: a tenant's unprocessed events in arrival order, with their lanes, so that a claim of
-- some lanes skips the others' entries in the index itself. Claims order by `raw_event_id + 0`,
-- an order only this index provides. Ordered by raw_event_id itself, the planner walks the
-- primary key instead, through every processed row, whenever statistics were taken during a
-- backlog (they then say most events are pending): each claim grew with the events ever stored.
CREATE INDEX site_tracking_events_r_pending_idx
    ON raw.site_tracking_events_r (tenant_hk, (raw_event_id + 0), processing_lane)
    WHERE processing_status <> 'PROCESSED';
CREATE INDEX site_tracking_events_r_tenant_received_idx
    ON raw.site_tracking_events_r (tenant_hk, received_timestamp);

-- For operators' "latest events" queries across all tenants (staging.pipeline_dashboard).
CREATE INDEX site_tracking_events_r_received_idx ON raw.site_tracking_events_r (received_timestamp);

-- Staging: one validated, normalised and enriched row per raw event.
-- User agents parsed by the application (ua-parser), shared by every tenant.
CREATE TABLE staging.user_agent_parse (
    user_agent_hk bytea PRIMARY KEY,
    browser_family text,
    browser_version text,
    os_family text,
    os_version text,
    device_type text NOT NULL CHECK (device_type IN ('desktop', 'mobile', 'tablet', 'bot')),
    is_bot boolean NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);

CREATE TABLE staging.site_tracking_events_s (
    raw_event_id bigint PRIMARY KEY,
    tenant_hk bytea NOT NULL,
    event_id text NOT NULL,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    record_source text NOT NULL,
    validation_status text NOT NULL CHECK (validation_status IN ('VALID', 'INVALID', 'SUSPICIOUS')),
    validation_reasons text[] NOT NULL DEFAULT '{}',
    quality_score numeric(3, 2) NOT NULL,
    event_type text,
    page_url text,
    page_host text,
    page_path text,
    page_query text,
    page_title text,
    utm_source text,
    utm_medium text,
    utm_campaign text,
    utm_term text,
    utm_content text,
    referrer_url text,
    referrer_host text,
    referrer_class text,
    user_agent text,
    browser_family text,
    browser_version text,
    os_family text,
    os_version text,
    device_type text,
    is_bot boolean NOT NULL DEFAULT false,
    client_ip_hash bytea,
    received_at timestamptz NOT NULL,
    occurred_at timestamptz,
    clock_skew_ms bigint,
    session_id text,
    session_derived boolean NOT NULL DEFAULT false,
    visitor_id text,
    visitor_derived boolean NOT NULL DEFAULT false,
    user_id text,
    event_properties jsonb,
    site_event_hk bytea,
    site_session_hk bytea,
    site_visitor_hk bytea,
    site_page_hk bytea,
    business_loaded_at timestamptz
);
CREATE INDEX site_tracking_events_s_tenant_idx ON staging.site_tracking_events_s (tenant_hk, raw_event_id);
CREATE INDEX site_tracking_events_s_visitor_time_idx ON staging.site_tracking_events_s (site_visitor_hk, occurred_at)
    WHERE session_derived;
CREATE INDEX site_tracking_events_s_unloaded_idx ON staging.site_tracking_events_s (tenant_hk)
    WHERE business_loaded_at IS NULL AND validation_status <> 'INVALID';

-- The Data Vault 2.0 business layer: hubs, links and satellites of site tracking.
-- Hash keys are util.hash_key(tenant_hk, business key): unique per tenant by construction, so
-- business keys of any length load without a (size-limited) index on them.
-- No foreign keys: the loader writes hubs before links and satellites in the same transaction,
-- and only for tenants it resolved (tenants are never deleted); the tests check that every
-- reference is whole. A check per row (the tenant's, with a share lock on its row) would cost
-- more than the rest of the load.

CREATE TABLE business.site_visitor_h (
    site_visitor_hk bytea PRIMARY KEY,
    site_visitor_bk text NOT NULL,
    tenant_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);

CREATE TABLE business.site_session_h (
    site_session_hk bytea PRIMARY KEY,
    site_session_bk text NOT NULL,
    tenant_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);

CREATE TABLE business.site_page_h (
    site_page_hk bytea PRIMARY KEY,
    site_page_bk text NOT NULL,
    tenant_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);

CREATE TABLE business.site_event_h (
    site_event_hk bytea PRIMARY KEY,
    site_event_bk text NOT NULL,
    tenant_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);
CREATE INDEX site_event_h_tenant_idx ON business.site_event_h (tenant_hk, load_date);

CREATE TABLE business.site_event_session_l (
    link_event_session_hk bytea PRIMARY KEY,
    site_event_hk bytea NOT NULL,
    site_session_hk bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);
CREATE INDEX site_event_session_l_session_idx ON business.site_event_session_l (site_session_hk);
CREATE INDEX site_event_session_l_event_idx ON business.site_event_session_l (site_event_hk);

CREATE TABLE business.site_event_page_l (
    link_event_page_hk bytea PRIMARY KEY,
    site_event_hk bytea NOT NULL,
    site_page_hk bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);
CREATE INDEX site_event_page_l_page_idx ON business.site_event_page_l (site_page_hk);
CREATE INDEX site_event_page_l_event_idx ON business.site_event_page_l (site_event_hk);

CREATE TABLE business.site_session_visitor_l (
    link_session_visitor_hk bytea PRIMARY KEY,
    site_session_hk bytea NOT NULL,
    site_visitor_hk bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now(),
    record_source text NOT NULL
);
CREATE INDEX site_session_visitor_l_visitor_idx ON business.site_session_visitor_l (site_visitor_hk);

CREATE TABLE business.site_event_details_s (
    site_event_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    hash_diff bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    raw_event_id bigint NOT NULL,
    event_type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    page_url text,
    referrer_url text,
    referrer_host text,
    referrer_class text,
    utm_source text,
    utm_medium text,
    utm_campaign text,
    utm_term text,
    utm_content text,
    user_id text,
    is_bot boolean NOT NULL,
    validation_status text NOT NULL,
    quality_score numeric(3, 2) NOT NULL,
    event_properties jsonb,
    record_source text NOT NULL,
    PRIMARY KEY (site_event_hk, load_date)
);
CREATE INDEX site_event_details_s_raw_idx ON business.site_event_details_s (raw_event_id);

CREATE TABLE business.site_page_details_s (
    site_page_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    hash_diff bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    page_host text,
    page_path text,
    page_title text,
    record_source text NOT NULL,
    PRIMARY KEY (site_page_hk, load_date)
);

CREATE TABLE business.site_visitor_details_s (
    site_visitor_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    hash_diff bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    user_id text,
    browser_family text,
    browser_version text,
    os_family text,
    os_version text,
    device_type text,
    is_bot boolean NOT NULL,
    is_derived boolean NOT NULL,
    record_source text NOT NULL,
    PRIMARY KEY (site_visitor_hk, load_date)
);

CREATE TABLE business.site_session_summary_s (
    site_session_hk bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    hash_diff bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    session_start timestamptz NOT NULL,
    session_end timestamptz NOT NULL,
    page_views integer NOT NULL,
    event_count integer NOT NULL,
    duration_seconds integer NOT NULL,
    entry_page text,
    exit_page text,
    is_bounce boolean NOT NULL,
    is_bot boolean NOT NULL,
    referrer_host text,
    referrer_class text,
    utm_source text,
    utm_medium text,
    utm_campaign text,
    utm_term text,
    utm_content text,
    record_source text NOT NULL,
    PRIMARY KEY (site_session_hk, load_date)
);

-- Running totals per tenant and UTC day, kept by the pipeline in the same transaction as the
-- work they count, so status and dashboard do not count millions of rows on every request.
CREATE TABLE staging.pipeline_stats (
    tenant_hk bytea NOT NULL,
    day date NOT NULL,
    staged bigint NOT NULL DEFAULT 0,
    loaded bigint NOT NULL DEFAULT 0,
    quarantined bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_hk, day)
);

-- Background processing yields to saturated ingestion: after a batch, a server whose ingestion is
-- saturated has the batch's lanes rest for a while, and the background runs of every process wait
-- for it (requests' own runs and manual runs do not). Rows are overwritten, never deleted.
CREATE TABLE staging.pipeline_rest (
    tenant_hk bytea NOT NULL,
    lane smallint NOT NULL,
    rest_until timestamptz NOT NULL,
    PRIMARY KEY (tenant_hk, lane)
);
