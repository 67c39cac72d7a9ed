-- Brings a subscription's ($1) read_denied in line with whether its owner may read its table,
-- while the table is there (gone, there is no ACL left to ask, and the last word stands): its
-- held events must not go out once the table is dropped. Whatever its status (paused, disabled
-- for failing, unsubscribed). Decided here, under this statement's snapshot, so a GRANT or a
-- resume committed since the worker looked is not undone. (A DROP notes it too, under its lock,
-- for the subscriptions of each table it deletes: src/triggers/drop_access.rs.)
-- An owner whose role is gone makes it an orphan for good (owner_dropped, see schema.sql):
-- the owner this statement's snapshot saw (`seen`), not one a set_owner() committed while this
-- waited for the row gave it (a role made after the snapshot, which it cannot see).
UPDATE webhook._subscriptions s
   SET read_denied = (o.denied IS NOT NULL),
       owner_dropped = s.owner_dropped
           OR (a.oid IS NULL AND s.owner::pg_catalog.oid = seen.owner::pg_catalog.oid)
  FROM webhook._owner_access o
  JOIN webhook._subscriptions seen ON seen.id = o.id
  LEFT JOIN pg_catalog.pg_authid a ON a.oid = seen.owner::pg_catalog.oid
 WHERE s.id = $1 AND o.id = s.id
   AND (s.read_denied IS DISTINCT FROM (o.denied IS NOT NULL)
        OR (a.oid IS NULL AND NOT s.owner_dropped
            AND s.owner::pg_catalog.oid = seen.owner::pg_catalog.oid))
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = s.target::pg_catalog.oid)
   -- Not while another transaction holds the row: see disable.sql.
   AND s.id IN (SELECT l.id FROM webhook._subscriptions l
                 WHERE l.id = $1 FOR UPDATE SKIP LOCKED)
