-- Back to 0007: every customer honours the privacy signals again (the code of 0007 ignores them).
DROP TABLE auth.tenant_privacy_s;
