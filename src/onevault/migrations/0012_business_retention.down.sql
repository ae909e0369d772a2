-- Back to 0011: every customer keeps its business layer again (the code of 0011 knows no retention).
DROP TABLE auth.tenant_retention_s;
