-- name: read_source
-- Whether the read pool's server is a standby, and how far behind its primary it is (seconds):
-- 0 while it streams from the primary and has replayed all it received, else the age of the last
-- transaction it replayed (null before the first).
SELECT pg_is_in_recovery() AS replica,
       CASE
           WHEN NOT pg_is_in_recovery() THEN NULL
           WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0
           ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS lag_seconds;
