-- How long a customer keeps its business layer (`onevault tenant set-retention`): an insert-only
-- satellite of the tenant, the latest row in force; no row, or a NULL business_days, is "keep".
-- privacy.apply_business_retention removes the sessions that ended more than business_days ago.
CREATE TABLE auth.tenant_retention_s (
    tenant_hk bytea NOT NULL REFERENCES auth.tenant_h,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    business_days integer CHECK (business_days >= 1),
    record_source text NOT NULL,
    PRIMARY KEY (tenant_hk, load_date)
);
