-- pg_webhook's churning tables that have enough dead rows to vacuum now: at least $1, and at
-- least $2 of their live rows; their OID, name, dead rows and VACUUMs so far. The workers
-- report their own inserts and deletes, so these figures are at most a second or so old.
SELECT relid, pg_catalog.format('%I.%I', schemaname, relname), n_dead_tup, vacuum_count
  FROM pg_catalog.pg_stat_all_tables
 WHERE schemaname OPERATOR(pg_catalog.=) 'webhook'
   AND relname IN ('_event_queue', '_event_archive', '_attempts', '_callback_queue',
                   '_batches_out')
   AND n_dead_tup OPERATOR(pg_catalog.>=) $1
   AND n_dead_tup::pg_catalog.float8 OPERATOR(pg_catalog.>=) $2 * (n_live_tup + 1)
 ORDER BY relname
