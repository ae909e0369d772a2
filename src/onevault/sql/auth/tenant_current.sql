-- Current state of each tenant (the latest satellite row).
CREATE OR REPLACE VIEW auth.tenant_current AS
SELECT h.tenant_hk, h.tenant_bk AS customer_id, s.is_active, s.display_name,
       h.load_date AS created_at, s.load_date AS updated_at
FROM auth.tenant_h h
JOIN LATERAL (
    SELECT * FROM auth.tenant_s x WHERE x.tenant_hk = h.tenant_hk ORDER BY x.load_date DESC LIMIT 1
) s ON true;
