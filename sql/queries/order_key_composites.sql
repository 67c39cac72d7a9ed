-- The composite types (and tables' row types) that the values of table $1's order key columns
-- ($2) reach (key_type_reach.sql, which follows this head): a change to one changes the keys'
-- hashes. The statement's tail is order_key_composites_tail.sql.
WITH RECURSIVE keys(sub, target, order_key) AS (
    SELECT 0, $1::pg_catalog.oid, $2::pg_catalog.text[]
),
