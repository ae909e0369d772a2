-- Back to 0016: the rollups' keys of 0006.
ALTER TABLE mart.traffic_daily DROP CONSTRAINT traffic_daily_pkey,
    ADD PRIMARY KEY (tenant_hk, dimension, day, value);
ALTER TABLE mart.visitor_days DROP CONSTRAINT visitor_days_pkey,
    ADD PRIMARY KEY (tenant_hk, dimension, day, value, prev_day) INCLUDE (visitors);
