-- Back to 0009: the key of IP hashes in the database again — the session's (`onevault.secret_key`,
-- which `onevault db rollback` gives it) so that addresses are recognised as before, else a new one.
DROP TABLE util.visitor_salt;

CREATE TABLE util.ip_hash_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    hash_key bytea NOT NULL,
    load_date timestamptz NOT NULL DEFAULT now()
);
INSERT INTO util.ip_hash_key (hash_key)
VALUES (coalesce(decode(nullif(current_setting('onevault.secret_key', true), ''), 'hex'),
                 sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text,
                                   'UTF8'))));
REVOKE ALL ON util.ip_hash_key FROM PUBLIC;

COMMENT ON COLUMN raw.site_tracking_events_r.client_ip_hash IS
    'SHA-256 of the client IP keyed with util.ip_hash_key; the IP itself is never stored';
