-- Records subscriptions' health ($1 ids, $2 now failing): failing since when, NULL after a
-- success.
UPDATE webhook._subscriptions s
   SET failing_since = CASE WHEN u.failing THEN COALESCE(s.failing_since, pg_catalog.now()) END
  FROM unnest($1::pg_catalog.int4[], $2::pg_catalog.bool[]) AS u(id, failing)
 WHERE s.id = u.id AND (s.failing_since IS NULL) = u.failing
   -- Not those another transaction holds: see disable.sql. Their health is written with a
   -- later outcome.
   AND s.id IN (SELECT l.id FROM webhook._subscriptions l
                 WHERE l.id = ANY ($1::pg_catalog.int4[]) FOR UPDATE SKIP LOCKED)
