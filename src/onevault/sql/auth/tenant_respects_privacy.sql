-- Whether a customer honours browsers' privacy signals, `DNT: 1` and `Sec-GPC: 1`, by storing
-- nothing of such requests (`onevault tenant set-privacy`; it does until told otherwise).
CREATE OR REPLACE FUNCTION auth.tenant_respects_privacy(p_tenant_hk bytea) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN coalesce((SELECT p.respect_signals FROM auth.tenant_privacy_s p
                     WHERE p.tenant_hk = p_tenant_hk ORDER BY p.load_date DESC LIMIT 1), true);
