DROP VIEW auth.api_token_current;
DROP VIEW auth.tenant_current;
DROP TABLE auth.api_token_s;
DROP TABLE auth.api_token_h;
DROP TABLE auth.tenant_s;
DROP TABLE auth.tenant_h;
