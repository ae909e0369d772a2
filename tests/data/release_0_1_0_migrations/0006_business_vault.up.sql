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
