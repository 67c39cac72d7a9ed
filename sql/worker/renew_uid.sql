-- Gives subscription $1 the new uid $2 and notes this copy of the database as its instance,
-- unless another worker did first; returns its name and its old uid when this one did.
UPDATE webhook._subscriptions s
   SET uid = $2, instance = webhook._instance_id()
  FROM (SELECT id, uid FROM webhook._subscriptions WHERE id = $1) old
 WHERE s.id = old.id
   AND s.instance IS DISTINCT FROM webhook._instance_id()
RETURNING s.name, old.uid
