-- name: erase_visitor
-- Erases the data of a visitor (visitor_id) or of every visitor seen with a user id (user_id) of a
-- customer in one transaction, records the audit row and returns what was erased (privacy.erase_visitor).
SELECT privacy.erase_visitor(%(tenant_hk)s::bytea, %(visitor_id)s::text, %(user_id)s::text, %(erased_by)s::text,
                             %(record_source)s::text);
