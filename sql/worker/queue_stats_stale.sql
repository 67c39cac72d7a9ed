-- Whether the planner takes the queue for smaller than the page of $1 events a claim just read.
-- The queue is never truncated, so a VACUUM or ANALYZE that finds it empty leaves it "0 rows in
-- N pages", and PostgreSQL then estimates it empty however full it gets: every batch of outcomes
-- was joined to it by reading the whole queue (30 ms per batch with 100,000 queued events, a
-- fifth of the normal drain). Estimated the way the planner does: rows per page as last
-- counted, times the pages it has now.
SELECT c.relpages > 0
       AND c.reltuples >= 0
       AND c.reltuples::pg_catalog.float8 / c.relpages
           * (pg_catalog.pg_relation_size(c.oid)
              / pg_catalog.current_setting('block_size')::pg_catalog.int8) < $1
  FROM pg_catalog.pg_class c
 WHERE c.oid = 'webhook._event_queue'::pg_catalog.regclass
