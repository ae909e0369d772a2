-- The web origins a customer's browser events may come from (`onevault tenant allow-origin`):
-- an insert-only satellite of the tenant, one row per change of one origin, the latest row of
-- each origin saying whether it is allowed (see auth.tenant_origin_current).
CREATE TABLE auth.tenant_origin_s (
    tenant_hk bytea NOT NULL REFERENCES auth.tenant_h,
    origin text NOT NULL CHECK (origin ~ '^https?://[^/?#\s]+$'),
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    is_allowed boolean NOT NULL,
    record_source text NOT NULL,
    PRIMARY KEY (tenant_hk, origin, load_date)
);
