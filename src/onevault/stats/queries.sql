-- The stats API's statements over the marts (docs/analytics.md). Every statement reads one
-- customer's rows: `tenant_hk = %(tenant)s` is the first predicate of each table it reads.
-- Statements with placeholders in braces are templates composed with psycopg.sql (stats/query.py;
-- never braces in a comment: they would be placeholders too):
-- their figures come out by keys named k0, k1, ... in the order of the query's dimensions.
-- %(visitors_asked)s, %(visits_asked)s (any visit figure), %(pageviews_asked)s and %(events_asked)s say
-- which figures the query wants: the others are not read, and a row none of whose asked figures is
-- non-zero is no row of the answer. The answer's own values (its page, the asked figures of its rows)
-- are composed in: placeholders for one query, each query's values in a batch's statement.
-- The facts' statements read all of the range's sessions, or (a large range: stats/query.py's Sample)
-- those of a sample of visitors, `s.site_visitor_hk < %(sample_below)s` composed in as their sample
-- (the keys are SHA-256: each first byte below it is 1/256 of the visitors, all of their sessions).

-- name: tenant_clock
-- The caller's tenant key and time zone, today there, and (when asked) the first local day of its data
-- (the first hour of the hourly rollup that a change did not leave at zero).
SELECT t.tenant_hk, t.zone, (now() AT TIME ZONE t.zone)::date AS today,
       CASE WHEN %(first_day)s
            THEN (SELECT min(h.hour)::date FROM mart.traffic_hourly h
                  WHERE h.tenant_hk = t.tenant_hk
                    AND (h.visitors, h.visits, h.bounces, h.duration_seconds, h.visit_pageviews, h.pageviews, h.events)
                        <> (0, 0, 0, 0, 0, 0, 0)) END
           AS first_day
FROM (SELECT k.tenant_hk, mart.tenant_zone(k.tenant_hk) AS zone
      FROM (SELECT util.tenant_hk(%(customer_id)s) AS tenant_hk) k) t

-- name: range_sessions
-- The caller's sessions that start in the local hours [lo, hi) (the hourly rollup's visits).
SELECT coalesce(sum(h.visits), 0) AS sessions
FROM mart.traffic_hourly h
WHERE h.tenant_hk = %(tenant)s AND h.hour >= %(lo)s AND h.hour < %(hi)s

-- name: statement_timeout
-- Statements of the current transaction are cancelled after %(ms)s milliseconds.
SELECT set_config('statement_timeout', %(ms)s::text, true)

-- name: realtime_visitors
-- Distinct visitors of the caller's sessions whose last event is at most %(seconds)s seconds old.
SELECT count(DISTINCT f.site_visitor_hk) AS visitors, now() AS timestamp
FROM mart.session_f f
WHERE f.tenant_hk = util.tenant_hk(%(customer_id)s)
  AND f.ended_at >= now() - make_interval(secs => %(seconds)s)

-- name: rollup_total
-- Totals of the local days [start, end]: the hourly rollup's sums, and the distinct visitors from the
-- visitor days (a visitor's first day in the range is its only one whose previous day is before it).
SELECT coalesce(u.visitors, 0) AS visitors, coalesce(t.visits, 0) AS visits, coalesce(t.bounces, 0) AS bounces,
       coalesce(t.duration_seconds, 0) AS duration_seconds, coalesce(t.visit_pageviews, 0) AS visit_pageviews,
       coalesce(t.pageviews, 0) AS pageviews, coalesce(t.events, 0) AS events
FROM (SELECT sum(h.visits) AS visits, sum(h.bounces) AS bounces, sum(h.duration_seconds) AS duration_seconds,
             sum(h.visit_pageviews) AS visit_pageviews, sum(h.pageviews) AS pageviews, sum(h.events) AS events
      FROM mart.traffic_hourly h
      WHERE h.tenant_hk = %(tenant)s AND h.hour >= %(lo)s AND h.hour < %(hi)s
        AND (%(visits_asked)s OR %(pageviews_asked)s OR %(events_asked)s)) t
CROSS JOIN (SELECT sum(v.visitors) AS visitors
            FROM mart.visitor_days v
            WHERE v.tenant_hk = %(tenant)s AND v.dimension = 0 AND v.day BETWEEN %(start)s AND %(end)s
              AND v.prev_day < %(start)s AND %(visitors_asked)s) u

-- name: rollup_hours
-- Each local hour of [lo, hi) of the hourly rollup, with its own distinct visitors (rows a change left
-- at zero skipped).
SELECT h.hour AS {bucket}, h.visitors, h.visits, h.bounces, h.duration_seconds, h.visit_pageviews,
       h.pageviews, h.events
FROM mart.traffic_hourly h
WHERE h.tenant_hk = %(tenant)s AND h.hour >= %(lo)s AND h.hour < %(hi)s
  AND (h.visitors, h.visits, h.bounces, h.duration_seconds, h.visit_pageviews, h.pageviews, h.events)
      <> (0, 0, 0, 0, 0, 0, 0)

-- name: rollup_buckets
-- The days, weeks or months (%(unit)s) of [start, end]: the hourly rollup summed by bucket, and the
-- distinct visitors of each bucket's days in the range (those whose previous day is before the first).
SELECT coalesce(t.bucket, u.bucket) AS {bucket}, coalesce(u.visitors, 0) AS visitors,
       coalesce(t.visits, 0) AS visits, coalesce(t.bounces, 0) AS bounces,
       coalesce(t.duration_seconds, 0) AS duration_seconds, coalesce(t.visit_pageviews, 0) AS visit_pageviews,
       coalesce(t.pageviews, 0) AS pageviews, coalesce(t.events, 0) AS events
FROM (SELECT date_trunc(%(unit)s, h.hour) AS bucket, sum(h.visits) AS visits, sum(h.bounces) AS bounces,
             sum(h.duration_seconds) AS duration_seconds, sum(h.visit_pageviews) AS visit_pageviews,
             sum(h.pageviews) AS pageviews, sum(h.events) AS events
      FROM mart.traffic_hourly h
      WHERE h.tenant_hk = %(tenant)s AND h.hour >= %(lo)s AND h.hour < %(hi)s
        AND (%(visits_asked)s OR %(pageviews_asked)s OR %(events_asked)s)
      GROUP BY 1
      HAVING (sum(h.visits), sum(h.bounces), sum(h.duration_seconds), sum(h.visit_pageviews), sum(h.pageviews),
              sum(h.events)) <> (0, 0, 0, 0, 0, 0)) t
FULL JOIN (SELECT date_trunc(%(unit)s, v.day::timestamp) AS bucket, sum(v.visitors) AS visitors
           FROM mart.visitor_days v
           WHERE v.tenant_hk = %(tenant)s AND v.dimension = 0 AND v.day BETWEEN %(start)s AND %(end)s
             AND v.prev_day < greatest(date_trunc(%(unit)s, v.day::timestamp)::date, %(start)s)
             AND %(visitors_asked)s
           GROUP BY 1
           HAVING sum(v.visitors) <> 0) u ON u.bucket = t.bucket

-- name: rollup_values
-- The values of one dimension over [start, end] from the daily rollup, with their distinct visitors:
-- all of them, or the one %(value)s names.
SELECT coalesce(t.value, u.value) AS {value}, coalesce(u.visitors, 0) AS visitors,
       coalesce(t.visits, 0) AS visits, coalesce(t.bounces, 0) AS bounces,
       coalesce(t.duration_seconds, 0) AS duration_seconds, coalesce(t.visit_pageviews, 0) AS visit_pageviews,
       coalesce(t.pageviews, 0) AS pageviews, coalesce(t.events, 0) AS events
FROM (SELECT d.value, sum(d.visits) AS visits, sum(d.bounces) AS bounces,
             sum(d.duration_seconds) AS duration_seconds, sum(d.visit_pageviews) AS visit_pageviews,
             sum(d.pageviews) AS pageviews, sum(d.events) AS events
      FROM mart.traffic_daily d
      WHERE d.tenant_hk = %(tenant)s AND d.dimension = (SELECT m.dimension FROM mart.dimension m WHERE m.name = %(dimension)s)
        AND d.day BETWEEN %(start)s AND %(end)s AND (%(value)s::text IS NULL OR d.value = %(value)s)
        AND (%(visits_asked)s OR %(pageviews_asked)s OR %(events_asked)s)
      GROUP BY 1
      HAVING (sum(d.visits), sum(d.bounces), sum(d.duration_seconds), sum(d.visit_pageviews), sum(d.pageviews),
              sum(d.events)) <> (0, 0, 0, 0, 0, 0)) t
FULL JOIN (SELECT v.value, sum(v.visitors) AS visitors
           FROM mart.visitor_days v
           WHERE v.tenant_hk = %(tenant)s AND v.dimension = (SELECT m.dimension FROM mart.dimension m WHERE m.name = %(dimension)s)
             AND v.day BETWEEN %(start)s AND %(end)s AND v.prev_day < %(start)s AND %(visitors_asked)s
             AND (%(value)s::text IS NULL OR v.value = %(value)s)
           GROUP BY 1
           HAVING sum(v.visitors) <> 0) u ON u.value = t.value

-- name: rollup_bucket_values
-- The values of one dimension (all, or the one %(value)s names) by day, week or month (%(unit)s) of
-- [start, end] from the daily rollup, with the distinct visitors of each value in each bucket's days
-- in the range.
SELECT coalesce(t.bucket, u.bucket) AS {bucket}, coalesce(t.value, u.value) AS {value},
       coalesce(u.visitors, 0) AS visitors, coalesce(t.visits, 0) AS visits, coalesce(t.bounces, 0) AS bounces,
       coalesce(t.duration_seconds, 0) AS duration_seconds, coalesce(t.visit_pageviews, 0) AS visit_pageviews,
       coalesce(t.pageviews, 0) AS pageviews, coalesce(t.events, 0) AS events
FROM (SELECT date_trunc(%(unit)s, d.day::timestamp) AS bucket, d.value, sum(d.visits) AS visits,
             sum(d.bounces) AS bounces, sum(d.duration_seconds) AS duration_seconds,
             sum(d.visit_pageviews) AS visit_pageviews, sum(d.pageviews) AS pageviews, sum(d.events) AS events
      FROM mart.traffic_daily d
      WHERE d.tenant_hk = %(tenant)s AND d.dimension = (SELECT m.dimension FROM mart.dimension m WHERE m.name = %(dimension)s)
        AND d.day BETWEEN %(start)s AND %(end)s AND (%(value)s::text IS NULL OR d.value = %(value)s)
        AND (%(visits_asked)s OR %(pageviews_asked)s OR %(events_asked)s)
      GROUP BY 1, 2
      HAVING (sum(d.visits), sum(d.bounces), sum(d.duration_seconds), sum(d.visit_pageviews), sum(d.pageviews),
              sum(d.events)) <> (0, 0, 0, 0, 0, 0)) t
FULL JOIN (SELECT date_trunc(%(unit)s, v.day::timestamp) AS bucket, v.value, sum(v.visitors) AS visitors
           FROM mart.visitor_days v
           WHERE v.tenant_hk = %(tenant)s AND v.dimension = (SELECT m.dimension FROM mart.dimension m WHERE m.name = %(dimension)s)
             AND v.day BETWEEN %(start)s AND %(end)s AND (%(value)s::text IS NULL OR v.value = %(value)s)
             AND v.prev_day < greatest(date_trunc(%(unit)s, v.day::timestamp)::date, %(start)s)
             AND %(visitors_asked)s
           GROUP BY 1, 2
           HAVING sum(v.visitors) <> 0) u ON u.bucket = t.bucket AND u.value = t.value

-- name: rollup_value_total
-- Totals of the one value %(value)s names (its row of rollup_values, or zeros).
SELECT coalesce(sum(x.visitors), 0) AS visitors, coalesce(sum(x.visits), 0) AS visits,
       coalesce(sum(x.bounces), 0) AS bounces, coalesce(sum(x.duration_seconds), 0) AS duration_seconds,
       coalesce(sum(x.visit_pageviews), 0) AS visit_pageviews, coalesce(sum(x.pageviews), 0) AS pageviews,
       coalesce(sum(x.events), 0) AS events
FROM ({values}) x

-- name: fact_events
-- Event figures and distinct visitors of the events (matching the filters) of the local hours [lo, hi),
-- by the keys: an event's page, type and hour, its session's attributes. The events are read by the
-- visitor bytes of the sample (%(visitor_bytes)s: all 256 for everyone), an index range each.
SELECT {keys} count(DISTINCT s.site_visitor_hk) AS visitors, sum(e.pageviews) AS pageviews,
       sum(e.events) AS events
FROM mart.session_event_f e
JOIN mart.session_f s ON s.tenant_hk = %(tenant)s{sample} AND s.site_session_hk = e.site_session_hk
WHERE e.tenant_hk = %(tenant)s AND e.visitor_byte = ANY (%(visitor_bytes)s::smallint[])
  AND e.hour >= %(lo)s AND e.hour < %(hi)s
  AND (%(visitors_asked)s OR %(pageviews_asked)s OR %(events_asked)s){filters}
{group}

-- name: fact_sessions
-- All figures of the sessions (a set of fact_sessions_seen or fact_sessions_matching) by keys of their
-- attributes, when no event figure is asked: the visit figures of those that start in the local hours
-- [lo, hi), the distinct visitors of those with an event (matching the filters) there.
SELECT {keys} count(DISTINCT s.site_visitor_hk) FILTER (WHERE s.seen) AS visitors,
       count(*) FILTER (WHERE s.started) AS visits,
       coalesce(sum(s.is_bounce::integer) FILTER (WHERE s.started), 0) AS bounces,
       coalesce(sum(s.duration_seconds) FILTER (WHERE s.started), 0) AS duration_seconds,
       coalesce(sum(s.pageviews) FILTER (WHERE s.started), 0) AS visit_pageviews,
       0::bigint AS pageviews, 0::bigint AS events
FROM ({sessions}) s
{group}

-- name: fact_sessions_seen
-- The sessions matching the filters (all of a visit's attributes) that start in the local hours
-- [lo, hi) or, when visitors are asked, have an event there (all `seen`), in one pass over them. A
-- session that starts in the range has its first event there, one that starts after it none; one that
-- started before has one there only if it ended after the range's start (less a day: any zone's
-- midnight), and then its events tell.
SELECT s.*, s.start_hour >= %(lo)s AS started, true AS seen
FROM mart.session_f s
WHERE s.tenant_hk = %(tenant)s{sample} AND s.start_hour < %(hi)s{filters}
  AND (s.start_hour >= %(lo)s
       OR (%(visitors_asked)s
           AND s.ended_at >= (%(lo)s::timestamp AT TIME ZONE %(zone)s) - interval '1 day'
           AND EXISTS (SELECT FROM mart.session_event_f e
                       WHERE e.tenant_hk = %(tenant)s AND e.site_session_hk = s.site_session_hk
                         AND e.hour >= %(lo)s AND e.hour < %(hi)s)))

-- name: fact_sessions_matching
-- The sessions matching the visit filters with an event matching the event filters (whenever it
-- happened) that start in the local hours [lo, hi), or have such an event there (`seen`). Only events
-- from the range's start are read (none of a session that starts in the range precedes it), by the
-- sample's visitor bytes as in fact_events.
SELECT s.*, s.start_hour >= %(lo)s AS started, m.seen
FROM mart.session_f s
JOIN (SELECT e.site_session_hk, bool_or(e.hour < %(hi)s) AS seen
      FROM mart.session_event_f e
      WHERE e.tenant_hk = %(tenant)s AND e.visitor_byte = ANY (%(visitor_bytes)s::smallint[])
        AND e.hour >= %(lo)s{event_filters}
      GROUP BY 1) m ON m.site_session_hk = s.site_session_hk
WHERE s.tenant_hk = %(tenant)s{sample} AND s.start_hour < %(hi)s{filters} AND (s.start_hour >= %(lo)s OR m.seen)

-- name: fact_session_sets
-- Figures of the sessions (a set of fact_sessions_seen or fact_sessions_matching) by each of several
-- attributes at once (GROUPING SETS), for a batch of queries that differ only in that attribute, as
-- fact_sessions counts them: a row of one set has the other attributes NULL, which no value of the
-- marts is (a missing one is ''). Grouped by hashing, not sorting (one sort per set for the distinct
-- visitors was most of the time): a visitor with one session seen counts once wherever it is; a
-- visitor seen in several (`multi`) counts under each value at its first session seen there, found
-- among that visitor's sessions alone. `visitors_*` holds each set's own visitors.
WITH ranged AS MATERIALIZED (
    SELECT x.site_visitor_hk, x.seen, x.started, x.is_bounce, x.duration_seconds, x.pageviews, {columns}
    FROM ({sessions}) x
), multi AS MATERIALIZED (
    SELECT r.site_visitor_hk FROM ranged r WHERE r.seen GROUP BY 1 HAVING count(*) > 1
), sets AS MATERIALIZED (
    SELECT {keys}, {visitors}, count(*) FILTER (WHERE y.started) AS visits,
           coalesce(sum(y.is_bounce::integer) FILTER (WHERE y.started), 0) AS bounces,
           coalesce(sum(y.duration_seconds) FILTER (WHERE y.started), 0) AS duration_seconds,
           coalesce(sum(y.pageviews) FILTER (WHERE y.started), 0) AS visit_pageviews,
           0::bigint AS pageviews, 0::bigint AS events
    FROM (SELECT r.*, {once}
          FROM ranged r
          WHERE r.site_visitor_hk NOT IN (SELECT m.site_visitor_hk FROM multi m)
          UNION ALL
          SELECT r.*, {firsts}
          FROM ranged r
          WHERE r.site_visitor_hk IN (SELECT m.site_visitor_hk FROM multi m)) y
    GROUP BY GROUPING SETS ({sets})
)
{answers}

-- name: fact_session_set
-- One set of fact_session_sets: the figures by the values of one attribute.
SELECT {column} AS k0, {visitors} AS visitors, x.visits, x.bounces, x.duration_seconds, x.visit_pageviews,
       x.pageviews, x.events
FROM sets x
WHERE {column} IS NOT NULL

-- name: fact_event_sets
-- Event figures and distinct visitors of the events (matching the filters) of the local hours [lo, hi)
-- by each of several event attributes at once (GROUPING SETS), for a batch of queries that differ
-- only in that attribute, as fact_events counts them: one pass over the range's events (the sample's
-- visitor bytes); a row of one set has the other attributes NULL, which no value of the marts is.
WITH sets AS MATERIALIZED (
    SELECT {keys}, count(DISTINCT s.site_visitor_hk) AS visitors, sum(e.pageviews) AS pageviews,
           sum(e.events) AS events
    FROM mart.session_event_f e
    JOIN mart.session_f s ON s.tenant_hk = %(tenant)s{sample} AND s.site_session_hk = e.site_session_hk
    WHERE e.tenant_hk = %(tenant)s AND e.visitor_byte = ANY (%(visitor_bytes)s::smallint[])
      AND e.hour >= %(lo)s AND e.hour < %(hi)s{filters}
    GROUP BY GROUPING SETS ({sets})
)
{answers}

-- name: fact_event_set
-- One set of fact_event_sets: the figures by the values of one attribute.
SELECT {column} AS k0, x.visitors, 0::bigint AS visits, 0::bigint AS bounces, 0::bigint AS duration_seconds,
       0::bigint AS visit_pageviews, x.pageviews, x.events
FROM sets x
WHERE {column} IS NOT NULL

-- name: fact_visits
-- Visit figures of the sessions (matching the filters) that start in the local hours [lo, hi), by keys of
-- the session's attributes and start.
SELECT {keys} count(*) AS visits, sum(s.is_bounce::integer) AS bounces, sum(s.duration_seconds) AS duration_seconds,
       sum(s.pageviews) AS visit_pageviews
FROM mart.session_f s
WHERE s.tenant_hk = %(tenant)s{sample} AND s.start_hour >= %(lo)s AND s.start_hour < %(hi)s AND %(visits_asked)s{filters}
{group}

-- name: fact_visits_by_event
-- Visit figures of the sessions that start in the local hours [lo, hi), by keys some of which are an
-- event's: a session counts once under each combination its events (matching the filters) have, whenever
-- they happened.
SELECT {outer_keys} count(*) AS visits, sum(x.bounce) AS bounces, sum(x.duration_seconds) AS duration_seconds,
       sum(x.pageviews) AS visit_pageviews
FROM (SELECT DISTINCT s.site_session_hk, {keys} s.is_bounce::integer AS bounce, s.duration_seconds, s.pageviews
      FROM mart.session_f s
      JOIN mart.session_event_f e ON e.tenant_hk = %(tenant)s AND e.site_session_hk = s.site_session_hk
      WHERE s.tenant_hk = %(tenant)s{sample} AND s.start_hour >= %(lo)s AND s.start_hour < %(hi)s
        AND %(visits_asked)s{filters}) x
{group}

-- name: fact_event_exists
-- The session s has at least one event matching the filters, whenever it happened.
EXISTS (SELECT FROM mart.session_event_f e
        WHERE e.tenant_hk = %(tenant)s AND e.site_session_hk = s.site_session_hk{filters})

-- name: fact_sums_total
-- The totals of the events' and the visits' figures.
SELECT coalesce(ev.visitors, 0) AS visitors, coalesce(vs.visits, 0) AS visits, coalesce(vs.bounces, 0) AS bounces,
       coalesce(vs.duration_seconds, 0) AS duration_seconds, coalesce(vs.visit_pageviews, 0) AS visit_pageviews,
       coalesce(ev.pageviews, 0) AS pageviews, coalesce(ev.events, 0) AS events
FROM ({events}) ev
CROSS JOIN ({visits}) vs

-- name: fact_sums
-- The events' and the visits' figures side by side, by their keys.
SELECT {keys}, coalesce(ev.visitors, 0) AS visitors, coalesce(vs.visits, 0) AS visits,
       coalesce(vs.bounces, 0) AS bounces, coalesce(vs.duration_seconds, 0) AS duration_seconds,
       coalesce(vs.visit_pageviews, 0) AS visit_pageviews, coalesce(ev.pageviews, 0) AS pageviews,
       coalesce(ev.events, 0) AS events
FROM ({events}) ev
FULL JOIN ({visits}) vs USING ({keys})

-- name: answer
-- A page of the answer from the figures (by keys k0, k1, ...): the metrics of each row, ordered, with
-- the number of rows of the whole answer.
WITH sums AS MATERIALIZED (
{sums}
), answer AS (
    SELECT {keys}
           coalesce(s.visitors, 0) AS visitors, coalesce(s.visits, 0) AS visits,
           coalesce(s.pageviews, 0) AS pageviews, coalesce(s.events, 0) AS events,
           CASE WHEN coalesce(s.visits, 0) = 0 THEN 0
                ELSE round(s.visit_pageviews::numeric / s.visits, 2) END AS views_per_visit,
           CASE WHEN coalesce(s.visits, 0) = 0 THEN 0
                ELSE round(100 * s.bounces::numeric / s.visits, 1) END AS bounce_rate,
           CASE WHEN coalesce(s.visits, 0) = 0 THEN 0
                ELSE round(s.duration_seconds::numeric / s.visits) END AS visit_duration
    {rows}
)
SELECT n.total_rows, p.*
FROM (SELECT count(*) AS total_rows FROM answer) n
LEFT JOIN LATERAL (SELECT true AS present, a.* FROM answer a
                   ORDER BY {order} LIMIT {limit} OFFSET {offset}) p ON true

-- name: rows_total
-- The answer's one row: the totals.
FROM sums s

-- name: rows_of_sums
-- Rows: the keys with an asked figure.
FROM sums s
WHERE ({visitors_asked} AND s.visitors <> 0) OR ({visits_asked} AND s.visits <> 0)
   OR ({pageviews_asked} AND s.pageviews <> 0) OR ({events_asked} AND s.events <> 0)

-- name: rows_of_buckets
-- Rows of a query by time alone: every bucket of the range, zeros included (a chart's points).
FROM generate_series(date_trunc(%(unit)s, %(lo)s::timestamp), %(hi)s::timestamp - interval '1 hour',
                     ('1 ' || %(unit)s)::interval) g({bucket})
LEFT JOIN sums s USING ({bucket})
