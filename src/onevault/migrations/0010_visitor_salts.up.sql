-- The key of client IP hashes leaves the database (docs/privacy.md): the service keeps it in
-- ONEVAULT_SECRET_KEY or the file secret.key of its data directory (a first start copies the key
-- of util.ip_hash_key there before this migration drops the table) and gives it to its sessions.
-- Derived visitor ids change with a salt of each UTC day (or month): the salts of the periods
-- before the previous one are forgotten, so an address cannot be hashed into them again.
CREATE TABLE util.visitor_salt (
    rotation text NOT NULL CHECK (rotation IN ('daily', 'monthly')),
    period_start date NOT NULL,
    salt bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rotation, period_start)
);
REVOKE ALL ON util.visitor_salt FROM PUBLIC;

DROP TABLE util.ip_hash_key;

COMMENT ON COLUMN raw.site_tracking_events_r.client_ip_hash IS
    'SHA-256 of the client IP keyed with the installation''s secret key and the salt of the day it was received (util.client_ip_key); the IP itself is never stored';
