-- Back to 0005: the marts and the customers' time zones go; the vault they were derived from stays.
DROP SCHEMA mart CASCADE;
DROP TABLE auth.tenant_zone_s;
