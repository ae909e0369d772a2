-- Back to 0006: one entry per session again.
DELETE FROM mart.session_queue q
USING mart.session_queue d
WHERE d.site_session_hk = q.site_session_hk AND d.ctid < q.ctid;
DROP INDEX mart.session_queue_session_idx;
ALTER TABLE mart.session_queue ADD PRIMARY KEY (site_session_hk);
