-- A new backfill of subscription $1 (filter $2, key columns $3, started by $4, owned by $6), with the
-- planner's estimate of the rows of table $5 (of all its partitions if it has any). No row when
-- another session started one meanwhile (the caller checked before).
INSERT INTO webhook._backfills (subscription_id, filter, key_columns, rows_estimated, started_by,
                                owner)
SELECT $1, $2, $3, COALESCE(pg_catalog.sum(GREATEST(c.reltuples, 0)), 0)::bigint,
       $4::pg_catalog.oid::pg_catalog.regrole, $6::pg_catalog.oid::pg_catalog.regrole
  FROM pg_catalog.pg_class c
 WHERE c.relkind <> 'p'
   AND (c.oid = $5
        OR c.oid IN (SELECT p.relid
                       FROM pg_catalog.pg_partition_tree($5::pg_catalog.oid::pg_catalog.regclass) p))
ON CONFLICT (subscription_id) WHERE state = 'running' DO NOTHING
RETURNING id
