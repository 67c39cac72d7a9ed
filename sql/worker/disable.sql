-- Disables a subscription ($1) with the reason ($2): its endpoint kept failing, answered
-- 410 Gone, or its owner may no longer read its table ($3) — or has no role any more, which
-- makes it an orphan for good (owner_dropped, see schema.sql). Whether the role is gone is
-- decided for the owner this statement's snapshot saw (`seen`): a set_owner() committed since
-- that snapshot, to a role made after it, is not taken for an orphan.
UPDATE webhook._subscriptions s
   SET status = 'disabled', status_reason = $2, read_denied = $3,
       owner_dropped = s.owner_dropped
           OR (s.owner::pg_catalog.oid OPERATOR(pg_catalog.=) seen.owner::pg_catalog.oid
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_authid a
                                WHERE a.oid OPERATOR(pg_catalog.=) seen.owner::pg_catalog.oid))
  FROM webhook._subscriptions seen
 WHERE s.id = $1 AND seen.id = $1 AND s.status = 'active'
   -- Not while another transaction holds the row (a pause or resume left open, say): it is
   -- tried again at the next load or outcome, and this claim or record goes on meanwhile
   -- (waiting, it held up every subscription's deliveries for as long as that one stayed open).
   AND s.id IN (SELECT l.id FROM webhook._subscriptions l
                 WHERE l.id = $1 FOR UPDATE SKIP LOCKED)
