-- The names of table $1's user columns (no system columns, no dropped ones).
SELECT attname::text FROM pg_catalog.pg_attribute
 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
