-- Erasing one person's data from every layer on request (`onevault visitor erase`,
-- DELETE /api/v1/visitors/… and /users/…, privacy.erase_visitor): the audit records of erasures,
-- the `erase` scope of tokens, and the indexes that find a person's events the vault's keys do
-- not reach (quarantined events, and events by user id).

CREATE SCHEMA privacy;
COMMENT ON SCHEMA privacy IS 'Erasure of one person''s data on request, and the audit records of erasures';

-- One row per erasure carried out: when, by whom (`cli:<OS user>`, or `token:<token id>` over
-- HTTP), how the person was named (by visitor id or by user id) and how many rows of each table
-- were erased — never whose data it was: no visitor id, user id, IP hash or event id, in clear or
-- hashed. An erasure that found nothing is recorded too (zero rows): the request was carried out.
CREATE TABLE privacy.erasure_audit (
    erasure_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_hk bytea NOT NULL REFERENCES auth.tenant_h,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    erased_by text NOT NULL,
    identified_by text NOT NULL CHECK (identified_by IN ('visitor_id', 'user_id')),
    visitors integer NOT NULL,
    sessions integer NOT NULL,
    events integer NOT NULL,
    erased_rows jsonb NOT NULL CHECK (jsonb_typeof(erased_rows) = 'object'),
    record_source text NOT NULL
);
CREATE INDEX erasure_audit_tenant_idx ON privacy.erasure_audit (tenant_hk, load_date);

-- Tokens may carry the `erase` scope (never accepted from a request body: those are `track` only).
ALTER TABLE auth.api_token_s DROP CONSTRAINT api_token_s_scopes_check;
ALTER TABLE auth.api_token_s ADD CONSTRAINT api_token_s_scopes_check
    CHECK (scopes <@ ARRAY['track', 'read', 'process', 'erase'] AND cardinality(scopes) > 0);

-- A person's staged events by user id (only events that carry one pay for this index), and a
-- visitor's quarantined events, which the vault's links do not reach.
CREATE INDEX site_tracking_events_s_user_idx ON staging.site_tracking_events_s (tenant_hk, user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX site_tracking_events_s_invalid_visitor_idx ON staging.site_tracking_events_s (tenant_hk, site_visitor_hk)
    WHERE validation_status = 'INVALID';
