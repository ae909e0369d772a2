-- Information marts (docs/analytics.md): what site owners read — visitors, visits, page views,
-- bounce rate, visit duration by time, page, source and device — derived from the business vault
-- in each customer's time zone, kept by the pipeline in the transaction that loads the vault,
-- and rebuilt by `onevault mart rebuild`. Bot sessions are left out (quarantined events never
-- reach the vault).

-- A customer's time zone (`onevault tenant set-timezone`): an insert-only satellite of the
-- tenant, the latest row in force; no row is UTC.
CREATE TABLE auth.tenant_zone_s (
    tenant_hk bytea NOT NULL REFERENCES auth.tenant_h,
    load_date timestamptz NOT NULL DEFAULT clock_timestamp(),
    time_zone text NOT NULL,
    record_source text NOT NULL,
    PRIMARY KEY (tenant_hk, load_date)
);

CREATE SCHEMA mart;

-- The dimensions of the stats API, by the code the rollups store.
CREATE TABLE mart.dimension (
    dimension smallint PRIMARY KEY,
    name text NOT NULL UNIQUE
);
INSERT INTO mart.dimension (dimension, name) VALUES
    (0, 'total'), (1, 'event:page'), (2, 'event:type'), (3, 'visit:entry_page'), (4, 'visit:exit_page'),
    (5, 'visit:referrer'), (6, 'visit:channel'), (7, 'visit:utm_source'), (8, 'visit:utm_medium'),
    (9, 'visit:utm_campaign'), (10, 'visit:browser'), (11, 'visit:os'), (12, 'visit:device');

-- Sessions the vault changed whose marts are not refreshed yet: the pipeline records them with
-- the load and refreshes them together (mart.refresh_queued) when it has caught up or enough
-- are waiting, so a session or visitor touched by many batches of a backlog is counted once.
CREATE TABLE mart.session_queue (
    site_session_hk bytea PRIMARY KEY,
    tenant_hk bytea NOT NULL
);
CREATE INDEX session_queue_tenant_idx ON mart.session_queue (tenant_hk);

-- Facts, one row per session in force that is not a bot's: its figures and its visit
-- attributes, with its start in the customer's time zone. Missing attributes are ''. Text of
-- the marts compares byte by byte (COLLATE "C"): the rollups group and sort it all the time.
CREATE TABLE mart.session_f (
    site_session_hk bytea PRIMARY KEY,
    tenant_hk bytea NOT NULL,
    site_visitor_hk bytea NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    start_hour timestamp NOT NULL,
    pageviews integer NOT NULL,
    events integer NOT NULL,
    duration_seconds integer NOT NULL,
    is_bounce boolean NOT NULL,
    entry_page text COLLATE "C" NOT NULL,
    exit_page text COLLATE "C" NOT NULL,
    referrer text COLLATE "C" NOT NULL,
    channel text COLLATE "C" NOT NULL,
    utm_source text COLLATE "C" NOT NULL,
    utm_medium text COLLATE "C" NOT NULL,
    utm_campaign text COLLATE "C" NOT NULL,
    browser text COLLATE "C" NOT NULL,
    os text COLLATE "C" NOT NULL,
    device text COLLATE "C" NOT NULL
);
CREATE INDEX session_f_tenant_start_idx ON mart.session_f (tenant_hk, start_hour);
CREATE INDEX session_f_tenant_end_idx ON mart.session_f (tenant_hk, ended_at);
CREATE INDEX session_f_visitor_idx ON mart.session_f (site_visitor_hk);

-- Facts, the events of those sessions counted by local hour, page (path; '' for none) and type.
CREATE TABLE mart.session_event_f (
    site_session_hk bytea NOT NULL,
    hour timestamp NOT NULL,
    page text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    tenant_hk bytea NOT NULL,
    events integer NOT NULL,
    pageviews integer NOT NULL,
    PRIMARY KEY (site_session_hk, hour, page, event_type)
);
CREATE INDEX session_event_f_tenant_hour_idx ON mart.session_event_f (tenant_hk, hour);

-- Rollups of the facts. Event figures (pageviews, events) count at the event's local time, visit
-- figures (visits, bounces, duration, the visits' page views) at the session's start.
CREATE TABLE mart.traffic_hourly (
    tenant_hk bytea NOT NULL,
    hour timestamp NOT NULL,
    visitors integer NOT NULL,
    visits integer NOT NULL,
    bounces integer NOT NULL,
    duration_seconds bigint NOT NULL,
    visit_pageviews integer NOT NULL,
    pageviews integer NOT NULL,
    events integer NOT NULL,
    PRIMARY KEY (tenant_hk, hour)
);

CREATE TABLE mart.traffic_daily (
    tenant_hk bytea NOT NULL,
    dimension smallint NOT NULL,
    day date NOT NULL,
    value text COLLATE "C" NOT NULL,
    visits integer NOT NULL,
    bounces integer NOT NULL,
    duration_seconds bigint NOT NULL,
    visit_pageviews integer NOT NULL,
    pageviews integer NOT NULL,
    events integer NOT NULL,
    PRIMARY KEY (tenant_hk, dimension, day, value)
);

-- Distinct visitors of any date range, as sums: for each visitor, value and local day the
-- visitor was seen with that value, the previous such day ('-infinity': none). The visitors of
-- [a, b] are the rows of days in [a, b] whose previous day is before a.
CREATE TABLE mart.visitor_days (
    tenant_hk bytea NOT NULL,
    dimension smallint NOT NULL,
    day date NOT NULL,
    value text COLLATE "C" NOT NULL,
    prev_day date NOT NULL,
    visitors integer NOT NULL,
    PRIMARY KEY (tenant_hk, dimension, day, value, prev_day) INCLUDE (visitors)
);

-- Sessions loaded before: the pipeline counts them as it does new ones (its periodic sweep visits
-- every customer with sessions waiting), or `onevault mart rebuild` does it at once.
INSERT INTO mart.session_queue (site_session_hk, tenant_hk)
SELECT site_session_hk, tenant_hk FROM business.site_session_state;
