-- Disables a subscription ($1) with the reason ($2): its endpoint kept failing, answered
-- 410 Gone, or its owner may no longer read its table ($3) — or has no role any more, which
-- makes it an orphan for good (owner_dropped, see schema.sql).
UPDATE webhook._subscriptions SET status = 'disabled', status_reason = $2, read_denied = $3,
       owner_dropped = owner_dropped
           OR NOT EXISTS (SELECT FROM pg_catalog.pg_authid a
                           WHERE a.oid OPERATOR(pg_catalog.=) owner::pg_catalog.oid)
 WHERE id = $1 AND status = 'active'
