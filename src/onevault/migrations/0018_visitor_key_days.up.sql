-- The days by value of visitors who come back often, so that counting their next session does not
-- read all of their other sessions.
--
-- A visitor day (mart.visitor_days) carries the previous day the visitor was seen with that value.
-- A refresh found it by reading all of the visitor's other sessions' facts, each through eleven
-- dimensions: for a visitor with 400 earlier sessions, a new session cost some 15 ms to count (60
-- such sessions: 42 ms with 10 earlier sessions each, 234 ms with 100, 1,037 ms with 400), so sites
-- whose visitors come back (identified visitors, a long retention) processed more slowly every
-- day. mart.visitor_key_days holds, for each visitor who came back often (mart.track_visitors adds
-- them as the pipeline counts their sessions), dimension, value and local day, how many of the
-- visitor's sessions were seen there; a refresh reads the nearest days before and after those it
-- changes, one index probe each. It starts empty: visitors are added at their next session.
--
-- Hourly visitors find the visitor's other sessions of an hour among the sessions that ended
-- since a day before it: the visitor index of mart.session_f gets the session's end.
CREATE TABLE mart.visitor_key_days (
    site_visitor_hk bytea NOT NULL,
    dimension smallint NOT NULL,
    value text COLLATE "C" NOT NULL,
    day date NOT NULL,
    sessions integer NOT NULL CHECK (sessions > 0),
    PRIMARY KEY (site_visitor_hk, dimension, value, day)
);

CREATE INDEX session_f_visitor_end_idx ON mart.session_f (site_visitor_hk, ended_at);
DROP INDEX mart.session_f_visitor_idx;
