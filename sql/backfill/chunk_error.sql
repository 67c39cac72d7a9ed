-- A chunk of running backfill $1 failed with $2: counted as one more failure in a row, or,
-- when it only waited too long for a lock or lost a deadlock ($3), as no more than one. The
-- next chunk waits a second per failure. Returns the failures in a row.
UPDATE webhook._backfills
   SET last_error = $2,
       failures = CASE WHEN $3 THEN pg_catalog.int4larger(failures, 1) ELSE failures + 1 END,
       retry_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+)
           pg_catalog.make_interval(secs => CASE WHEN $3 THEN pg_catalog.int4larger(failures, 1)
                                                 ELSE failures + 1 END)
 WHERE id = $1 AND state = 'running'
RETURNING failures
