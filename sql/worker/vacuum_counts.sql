-- How many times each of the tables $1 (OIDs) has been vacuumed by hand (the runner's VACUUMs
-- count here; those SKIP_LOCKED skipped do not).
SELECT relid, vacuum_count
  FROM pg_catalog.pg_stat_all_tables
 WHERE relid OPERATOR(pg_catalog.=) ANY ($1)
