-- When an event happened: the client's timestamp, moved by the client clock's offset when the
-- client also said when it sent the event (sent_at against the time it was received), or the
-- time it was received when the client gave none.
CREATE OR REPLACE FUNCTION staging.occurred_at(p_ts timestamptz, p_sent timestamptz, p_received timestamptz)
RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN p_ts IS NULL THEN p_received
                WHEN p_sent IS NOT NULL THEN p_received - (p_sent - p_ts)
                ELSE p_ts END;
