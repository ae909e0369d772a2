-- The page breakdowns read their rollups from the index alone, and only the rows they count.
--
-- mart.traffic_daily's key carries the figures (INCLUDE): a breakdown over a range reads the
-- range's rows from the key's leaf pages, next to each other, instead of from heap pages that
-- the rows of every dimension and day share (a 30-day page breakdown: 789 index pages instead of
-- 8,395 heap and index pages; 42 -> 20 ms at 2,000,000 events).
--
-- mart.visitor_days' key puts the previous day before the value: the visitors of [a, b] are the
-- rows of days in [a, b] whose previous day is before a, now one key range per day instead of
-- every row of the range's days, most of which are visitors seen again (at 10,000,000 events, a
-- 30-day page breakdown read some 15,500 pages for 116,000 rows it counted).
--
-- Both keys are built again: the tables are held for that time (about a minute per 10,000,000
-- events stored).
ALTER TABLE mart.traffic_daily DROP CONSTRAINT traffic_daily_pkey,
    ADD PRIMARY KEY (tenant_hk, dimension, day, value)
        INCLUDE (visits, bounces, duration_seconds, visit_pageviews, pageviews, events);
ALTER TABLE mart.visitor_days DROP CONSTRAINT visitor_days_pkey,
    ADD PRIMARY KEY (tenant_hk, dimension, day, prev_day, value) INCLUDE (visitors);
