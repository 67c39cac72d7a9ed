-- Subscriptions $1 keyed by (order_key) or leaving out (exclude_columns) column $2 follow it
-- under its new name $3, if their table's column was renamed (has $3 and no $2 now): returns
-- their tables. An order key left by name would hash differently from then on, and an
-- excluded column of personal data went out under its new name.
UPDATE webhook._subscriptions s
   SET order_key = pg_catalog.array_replace(s.order_key, $2::pg_catalog.text, $3::pg_catalog.text),
       exclude_columns = pg_catalog.array_replace(s.exclude_columns, $2::pg_catalog.text,
                                                  $3::pg_catalog.text)
 WHERE s.id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[])
   AND ($2::pg_catalog.text OPERATOR(pg_catalog.=) ANY (s.order_key)
        OR $2::pg_catalog.text OPERATOR(pg_catalog.=) ANY (s.exclude_columns))
   AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
                  AND a.attname OPERATOR(pg_catalog.=) $3::pg_catalog.name
                  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
                      AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
RETURNING s.target::pg_catalog.oid
