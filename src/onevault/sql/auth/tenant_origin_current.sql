-- The origins each tenant allows now: the latest row of every origin, when it says allowed.
CREATE OR REPLACE VIEW auth.tenant_origin_current AS
SELECT o.tenant_hk, o.origin, o.load_date AS allowed_at
FROM (SELECT DISTINCT ON (x.tenant_hk, x.origin) x.*
      FROM auth.tenant_origin_s x
      ORDER BY x.tenant_hk, x.origin, x.load_date DESC) o
WHERE o.is_allowed;
