-- Marks every subscription whose owner's role is gone an orphan for good (owner_dropped, see
-- schema.sql), whatever its status and whether its table is still there: one whose table went
-- first (DROP OWNED BY, then DROP ROLE) is unsubscribed, never held or disabled, yet its row
-- keeps its secret, headers and events, which a restore elsewhere would otherwise hand to the
-- role its owner's OID names there.
-- Decided on the row as this statement's snapshot saw it (`seen`): a set_owner() committed
-- meanwhile to a role made after that snapshot changes the owner, and is left alone (the
-- re-check of a concurrently updated row reads pg_authid under the old snapshot still).
-- Returns each one's name and its table's OID while the table is there (NULL: gone), whose
-- sessions must forget the owner's filter and payload they keep (capture's cache).
-- Not while another transaction holds the row (a set_owner() left open, say): it is marked at
-- a later load, and meanwhile sends nothing (its owner may not read its table, see
-- owner_access.sql); waiting, every load waited until lock_timeout, failed and began again,
-- and no subscription's events went out for as long as that transaction stayed open.
WITH seen AS MATERIALIZED (
    SELECT o.id, o.owner
      FROM webhook._subscriptions o
     WHERE NOT o.owner_dropped
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_authid a
                        WHERE a.oid OPERATOR(pg_catalog.=) o.owner::pg_catalog.oid)
), free AS MATERIALIZED (
    SELECT l.id
      FROM webhook._subscriptions l
     WHERE l.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT seen.id FROM seen))
       FOR UPDATE SKIP LOCKED
)
UPDATE webhook._subscriptions s
   SET owner_dropped = true
  FROM seen
 WHERE seen.id OPERATOR(pg_catalog.=) s.id
   AND s.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT free.id FROM free))
   AND s.owner::pg_catalog.oid OPERATOR(pg_catalog.=) seen.owner::pg_catalog.oid
RETURNING s.name,
          (SELECT c.oid FROM pg_catalog.pg_class c
            WHERE c.oid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid)
