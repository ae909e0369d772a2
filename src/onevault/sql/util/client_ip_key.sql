-- The key of the client IP hashes stored for events received at p_at (util.hash_client_ip): the
-- installation's secret key, which the service gives its sessions as `onevault.secret_key` (it is
-- never stored; docs/privacy.md), followed by the salt of p_at's period — its UTC day or month, or
-- none — as `onevault.salt_rotation` says (daily when unset; never: the hashes of 0.4.0). A
-- period's salt is random, made by its first event; making it forgets the salts before the
-- previous period's, so that no address can be hashed into an older period's visitor ids again.
CREATE OR REPLACE FUNCTION util.client_ip_key(p_at timestamptz) RETURNS bytea
LANGUAGE plpgsql AS $$
DECLARE
    v_key text := current_setting('onevault.secret_key', true);
    v_rotation text := coalesce(nullif(current_setting('onevault.salt_rotation', true), ''), 'daily');
    v_period date;
    v_salt bytea;
BEGIN
    IF coalesce(v_key, '') = '' THEN
        RAISE EXCEPTION 'client IPs cannot be hashed: this session has no secret key'
            USING HINT = 'Set onevault.secret_key to the installation''s key (the file secret.key of its data '
                         'directory, or ONEVAULT_SECRET_KEY), e.g. PGOPTIONS="-c onevault.secret_key=..." psql.';
    END IF;
    IF v_rotation = 'never' THEN
        RETURN decode(v_key, 'hex');
    ELSIF v_rotation NOT IN ('daily', 'monthly') THEN
        RAISE EXCEPTION 'unknown onevault.salt_rotation %: daily, monthly or never', v_rotation;
    END IF;
    v_period := date_trunc(CASE v_rotation WHEN 'daily' THEN 'day' ELSE 'month' END, p_at AT TIME ZONE 'UTC')::date;
    SELECT s.salt INTO v_salt FROM util.visitor_salt s WHERE s.rotation = v_rotation AND s.period_start = v_period;
    IF v_salt IS NULL THEN
        INSERT INTO util.visitor_salt AS s (rotation, period_start, salt)
        VALUES (v_rotation, v_period, uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
        ON CONFLICT (rotation, period_start) DO UPDATE SET salt = s.salt
        RETURNING s.salt INTO v_salt;
        DELETE FROM util.visitor_salt s
        WHERE s.rotation = v_rotation
          AND s.period_start < v_period - CASE v_rotation WHEN 'daily' THEN interval '1 day' ELSE interval '1 month' END;
    END IF;
    RETURN decode(v_key, 'hex') || v_salt;
END;
$$;
