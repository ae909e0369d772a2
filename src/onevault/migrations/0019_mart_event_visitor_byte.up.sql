-- The events' facts carry their visitor's sample byte, so that a large range counted over a sample
-- of visitors (docs/analytics.md) reads only the sample's events.
--
-- A query over a range that more than ONEVAULT_STATS_SAMPLE_SESSIONS sessions start in reads the
-- visitors whose key's first byte is below a bound. mart.session_f has the visitor's key; the
-- events of mart.session_event_f did not, so the pages panel and a page filter read every event
-- of the range and joined them to the sample's sessions (at 10,000,000 events, 1.1-2.1 s of a
-- filtered dashboard's 1.3-2.4 s). visitor_byte is the first byte of the session's visitor key
-- (0-255), and the index by customer, byte and hour replaces the one by customer and hour: a read
-- names the bytes it wants (all 256 when it reads everyone), one index range each.
--
-- The table is written again with the column (its rows joined to their sessions' facts); it is held
-- for that time, about a minute per 10,000,000 events stored.
CREATE TABLE mart.session_event_f_0019 (
    site_session_hk bytea NOT NULL,
    hour timestamp NOT NULL,
    page text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    tenant_hk bytea NOT NULL,
    visitor_byte smallint NOT NULL,
    events integer NOT NULL,
    pageviews integer NOT NULL
);
INSERT INTO mart.session_event_f_0019
    (site_session_hk, hour, page, event_type, tenant_hk, visitor_byte, events, pageviews)
SELECT e.site_session_hk, e.hour, e.page, e.event_type, e.tenant_hk, get_byte(s.site_visitor_hk, 0),
       e.events, e.pageviews
FROM mart.session_event_f e
JOIN mart.session_f s ON s.site_session_hk = e.site_session_hk;
DROP TABLE mart.session_event_f;
ALTER TABLE mart.session_event_f_0019 RENAME TO session_event_f;
ALTER TABLE mart.session_event_f ADD PRIMARY KEY (site_session_hk, hour, page, event_type);
CREATE INDEX session_event_f_tenant_byte_hour_idx ON mart.session_event_f (tenant_hk, visitor_byte, hour);
ANALYZE mart.session_event_f;
