DROP TABLE auth.tenant_origin_s;
