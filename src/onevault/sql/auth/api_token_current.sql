-- Current state of each token (the latest satellite row); token_id is a short public prefix of its hash.
CREATE OR REPLACE VIEW auth.api_token_current AS
SELECT h.api_token_hk, encode(substr(h.api_token_hk, 1, 6), 'hex') AS token_id, h.tenant_hk,
       s.scopes, s.expires_at, s.revoked_at, s.description, h.load_date AS created_at
FROM auth.api_token_h h
JOIN LATERAL (
    SELECT * FROM auth.api_token_s x WHERE x.api_token_hk = h.api_token_hk ORDER BY x.load_date DESC LIMIT 1
) s ON true;
