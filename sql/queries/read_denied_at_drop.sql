-- Notes on subscriptions ($1) whether their owners could read their tables when a DROP deleted
-- them ($2, in the same order): there is no ACL left to ask afterwards.
UPDATE webhook._subscriptions s
   SET read_denied = d.denied
  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int4[]), pg_catalog.unnest($2::pg_catalog.bool[])) AS d(id, denied)
 WHERE s.id = d.id AND s.read_denied IS DISTINCT FROM d.denied
