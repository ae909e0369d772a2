-- name: try_lock
-- One process maintains at a time (every server process runs the scheduler); held by the session.
SELECT pg_try_advisory_lock(7074, 0);

-- name: unlock
SELECT pg_advisory_unlock(7074, 0);

-- name: create_partitions
-- The partitions of raw and staging from today to a few days ahead.
SELECT raw.create_day_partitions(%(first)s::date, %(last)s::date);

-- name: expired_partitions
-- Partitions of raw older than its retention, with what holds each back, their parent and whether
-- a detach of it was interrupted.
SELECT x.partition_name::text, x.holding, i.inhparent::regclass::text AS parent, i.inhdetachpending
FROM raw.expired_partitions(%(before)s::date) x
JOIN pg_inherits i ON i.inhrelid = x.partition_name;

-- name: expired_staging_partitions
-- Partitions of staging older than its retention, likewise.
SELECT x.partition_name::text, x.holding, i.inhparent::regclass::text AS parent, i.inhdetachpending
FROM staging.expired_partitions(%(before)s::date) x
JOIN pg_inherits i ON i.inhrelid = x.partition_name;

-- name: expire_keys
SELECT raw.expire_event_keys(%(before)s::date);

-- name: business_retention
-- One chunk of the customers' business-layer retention (`onevault tenant set-retention`).
SELECT privacy.apply_business_retention(coalesce(%(now)s::timestamptz, now()), %(limit)s);
