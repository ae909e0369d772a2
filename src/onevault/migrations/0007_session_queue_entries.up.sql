-- The queue of sessions waiting for their information marts takes a session as often as the
-- pipeline touches it: with a unique key, a run recording a session that another run's refresh
-- is taking off the queue waited for that refresh to commit, so concurrent runs went one at a
-- time while the marts were refreshed. mart.refresh_queued takes every entry of a session at once.
ALTER TABLE mart.session_queue DROP CONSTRAINT session_queue_pkey;
CREATE INDEX session_queue_session_idx ON mart.session_queue (site_session_hk);
