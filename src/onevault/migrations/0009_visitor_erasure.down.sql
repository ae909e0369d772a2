-- Back to 0008: the erasure's audit records and indexes go, and no token keeps the `erase` scope
-- (the code of 0008 does not know it): it is taken from the tokens that had it among others, and
-- tokens that had no other scope are deleted, as they could do nothing there.
DROP INDEX staging.site_tracking_events_s_invalid_visitor_idx;
DROP INDEX staging.site_tracking_events_s_user_idx;

DELETE FROM auth.api_token_s s
WHERE s.api_token_hk IN (SELECT x.api_token_hk FROM auth.api_token_s x GROUP BY 1
                         HAVING bool_and(x.scopes = ARRAY['erase']));
DELETE FROM auth.api_token_h h
WHERE NOT EXISTS (SELECT 1 FROM auth.api_token_s s WHERE s.api_token_hk = h.api_token_hk);
UPDATE auth.api_token_s SET scopes = array_remove(scopes, 'erase') WHERE 'erase' = ANY (scopes);
ALTER TABLE auth.api_token_s DROP CONSTRAINT api_token_s_scopes_check;
ALTER TABLE auth.api_token_s ADD CONSTRAINT api_token_s_scopes_check
    CHECK (scopes <@ ARRAY['track', 'read', 'process'] AND cardinality(scopes) > 0);

DROP SCHEMA privacy CASCADE;
