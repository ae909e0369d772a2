-- Whether a customer honours the privacy signals of browsers (`DNT: 1`, `Sec-GPC: 1`) by storing
-- nothing of such requests (`onevault tenant set-privacy`): an insert-only satellite of the
-- tenant, the latest row in force; no row is "honour them".
CREATE TABLE auth.tenant_privacy_s (
    tenant_hk bytea NOT NULL REFERENCES auth.tenant_h,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    respect_signals boolean NOT NULL,
    record_source text NOT NULL,
    PRIMARY KEY (tenant_hk, load_date)
);
