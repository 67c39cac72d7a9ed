-- The subscriptions, whatever their status, whose table ($1) a DROP took: whether their owners
-- could read it just before the DROP (those in $2 could not) is the last word on their held
-- events, as there is no ACL left to ask afterwards.
UPDATE webhook._subscriptions
   SET read_denied = (id = ANY ($2::pg_catalog.int4[]))
 WHERE target::pg_catalog.oid = ANY ($1::pg_catalog.oid[])
   AND read_denied IS DISTINCT FROM (id = ANY ($2::pg_catalog.int4[]))
