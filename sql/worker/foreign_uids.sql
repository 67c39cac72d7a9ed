-- Subscriptions whose uid was made in another copy of this database (a restore of a dump of
-- it, see webhook._instance in schema.sql): their ids and uids, and this copy's instance.
SELECT id, uid, webhook._instance_id()
  FROM webhook._subscriptions
 WHERE instance IS DISTINCT FROM webhook._instance_id()
 ORDER BY id
