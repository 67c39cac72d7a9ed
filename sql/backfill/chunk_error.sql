-- A chunk of running backfill $1 failed with $2: counted as one more failure in a row, or,
-- when it only waited too long for a lock or lost a deadlock ($3), as one more wait in a row.
-- The next chunk waits a second per failure, or for a wait 1, 2, 4, 8, then 10 s. Returns the
-- failures in a row and the seconds until the next chunk.
UPDATE webhook._backfills
   SET last_error = $2,
       failures = failures OPERATOR(pg_catalog.+) CASE WHEN $3 THEN 0 ELSE 1 END,
       waits = waits OPERATOR(pg_catalog.+) CASE WHEN $3 THEN 1 ELSE 0 END,
       retry_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(
           secs => CASE WHEN $3
                        THEN LEAST(pg_catalog.power(2::pg_catalog.float8,
                                                    pg_catalog.int4smaller(waits, 4)), 10)
                        ELSE failures OPERATOR(pg_catalog.+) 1 END)
 WHERE id = $1 AND state = 'running'
RETURNING failures,
          pg_catalog.date_part('epoch', retry_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())
