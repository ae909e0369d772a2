-- An order-independent business vault (docs/vault.md): satellites by applied date, effectivity
-- of the links derived sessions can change, retired sessions, the ghost page, and indexes for
-- per-customer queries. Rows loaded before keep their content; their applied date is unknown
-- ('-infinity'), so any later row supersedes them, and `onevault vault rebuild` recomputes them.

-- Descriptive satellites: the event time a row describes, besides when it was loaded. Several
-- rows of one key may share a load (A → B → A in one batch), so the key is (hk, applied, load).
ALTER TABLE business.site_visitor_details_s ADD COLUMN applied_date timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE business.site_visitor_details_s ALTER COLUMN applied_date DROP DEFAULT;
ALTER TABLE business.site_visitor_details_s DROP CONSTRAINT site_visitor_details_s_pkey;
ALTER TABLE business.site_visitor_details_s ADD PRIMARY KEY (site_visitor_hk, applied_date, load_date);

ALTER TABLE business.site_page_details_s ADD COLUMN applied_date timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE business.site_page_details_s ALTER COLUMN applied_date DROP DEFAULT;
ALTER TABLE business.site_page_details_s DROP CONSTRAINT site_page_details_s_pkey;
ALTER TABLE business.site_page_details_s ADD PRIMARY KEY (site_page_hk, applied_date, load_date);
CREATE INDEX site_page_details_s_tenant_idx ON business.site_page_details_s (tenant_hk);

-- Session summaries are computed; a session whose events all moved into another (sessions merge
-- when a late event closes the gap between them) gets a last row that is not in force.
ALTER TABLE business.site_session_summary_s ADD COLUMN in_force boolean NOT NULL DEFAULT true;

-- The current summary and visitor of every session in force, kept by the loader beside the
-- insert-only history (a query-assist table of the business vault, like a PIT table: derived,
-- rebuilt by `onevault vault rebuild`). business.site_session_current reads it, so a customer's
-- sessions of a date range are one index range, whatever the history holds.
CREATE TABLE business.site_session_state (
    site_session_hk bytea PRIMARY KEY,
    tenant_hk bytea NOT NULL,
    site_visitor_hk bytea,
    load_date timestamptz NOT NULL,
    session_start timestamptz NOT NULL,
    session_end timestamptz NOT NULL,
    page_views integer NOT NULL,
    event_count integer NOT NULL,
    duration_seconds integer NOT NULL,
    entry_page text,
    exit_page text,
    is_bounce boolean NOT NULL,
    is_bot boolean NOT NULL,
    referrer_host text,
    referrer_class text,
    utm_source text,
    utm_medium text,
    utm_campaign text,
    utm_term text,
    utm_content text,
    record_source text NOT NULL
) WITH (fillfactor = 85);
-- Covering the figures most queries read, so a customer's date range is read from the index alone.
CREATE INDEX site_session_state_tenant_start_idx ON business.site_session_state (tenant_hk, session_start)
    INCLUDE (page_views, event_count, duration_seconds, is_bounce, is_bot);

-- Driving-key effectivity of event → session: an event's session is its latest row here, or its
-- only link when it has none (events move only when derived sessions merge or start earlier).
CREATE TABLE business.site_event_session_eff_s (
    site_event_hk bytea NOT NULL,
    load_date timestamptz NOT NULL,
    link_event_session_hk bytea NOT NULL,
    site_session_hk bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    record_source text NOT NULL,
    PRIMARY KEY (site_event_hk, load_date)
);

-- Driving-key effectivity of session → visitor: the visitor of the session's latest event holds
-- it, from the applied date of that event.
CREATE TABLE business.site_session_visitor_eff_s (
    site_session_hk bytea NOT NULL,
    load_date timestamptz NOT NULL,
    applied_date timestamptz NOT NULL,
    link_session_visitor_hk bytea NOT NULL,
    site_visitor_hk bytea NOT NULL,
    tenant_hk bytea NOT NULL,
    record_source text NOT NULL,
    PRIMARY KEY (site_session_hk, load_date)
);
CREATE INDEX site_session_visitor_eff_s_visitor_idx ON business.site_session_visitor_eff_s (site_visitor_hk);

-- Per-customer access starts from the hubs (a customer's events: site_event_h's (tenant_hk,
-- load_date); its sessions: site_session_state); links and satellites are reached by hub key.
CREATE INDEX site_visitor_h_tenant_idx ON business.site_visitor_h (tenant_hk, site_visitor_hk);
CREATE INDEX site_page_h_tenant_idx ON business.site_page_h (tenant_hk);
-- A session's visitors, which the loader reads to tell which visitor holds it.
CREATE INDEX site_session_visitor_l_session_idx ON business.site_session_visitor_l (site_session_hk);

-- Sessions loaded before: their latest summary, held by the visitor of their latest link.
INSERT INTO business.site_session_state
SELECT s.site_session_hk, s.tenant_hk,
       (SELECT l.site_visitor_hk FROM business.site_session_visitor_l l
        WHERE l.site_session_hk = s.site_session_hk ORDER BY l.load_date DESC LIMIT 1),
       s.load_date, s.session_start, s.session_end, s.page_views, s.event_count, s.duration_seconds, s.entry_page,
       s.exit_page, s.is_bounce, s.is_bot, s.referrer_host, s.referrer_class, s.utm_source, s.utm_medium,
       s.utm_campaign, s.utm_term, s.utm_content, s.record_source
FROM (SELECT DISTINCT ON (x.site_session_hk) x.* FROM business.site_session_summary_s x
      ORDER BY x.site_session_hk, x.load_date DESC) s;

-- A session's events in staging, which summaries are recomputed from.
CREATE INDEX site_tracking_events_s_session_idx ON staging.site_tracking_events_s (site_session_hk);

-- The zero key: events without a page link to the ghost page.
INSERT INTO business.site_page_h (site_page_hk, site_page_bk, tenant_hk, load_date, record_source)
VALUES ('\x0000000000000000000000000000000000000000000000000000000000000000', '(no page)',
        '\x0000000000000000000000000000000000000000000000000000000000000000', '-infinity', 'SYSTEM');
INSERT INTO business.site_page_details_s (site_page_hk, applied_date, load_date, hash_diff, tenant_hk, page_host,
                                          page_path, page_title, record_source)
VALUES ('\x0000000000000000000000000000000000000000000000000000000000000000', '-infinity', '-infinity',
        '\x0000000000000000000000000000000000000000000000000000000000000000',
        '\x0000000000000000000000000000000000000000000000000000000000000000', NULL, NULL, NULL, 'SYSTEM');

-- The loader's functions changed their signatures; their files create the new ones.
DROP FUNCTION IF EXISTS staging.stage_events(bigint[]);
DROP FUNCTION IF EXISTS staging.load_business(bigint[]);

-- Lanes now follow the client session first (raw.processing_lane): due events take their new lane,
-- so that a session's pending events are never processed by two runs at once.
UPDATE raw.site_tracking_events_r r
SET processing_lane = l.lane
FROM (SELECT x.raw_event_id,
             (hashtext(coalesce(
                 nullif(lower(btrim(coalesce(x.raw_payload ->> 'session_id',
                                             x.raw_payload -> 'event_data' ->> 'session_id'), E' \t\r\n\f\v')), ''),
                 nullif(lower(btrim(coalesce(x.raw_payload ->> 'visitor_id',
                                             x.raw_payload -> 'event_data' ->> 'visitor_id'), E' \t\r\n\f\v')), ''),
                 encode(coalesce(x.client_ip_hash, '\x'::bytea), 'hex') || coalesce(x.user_agent, ''))) & 7)::smallint
                 AS lane
      FROM raw.site_tracking_events_r x
      WHERE x.processing_status <> 'PROCESSED') l
WHERE r.raw_event_id = l.raw_event_id AND r.processing_lane <> l.lane;
