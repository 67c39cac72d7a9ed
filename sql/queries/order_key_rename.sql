-- Subscription $1's order key follows its column $2, renamed $3, if its table's column was
-- renamed (has $3 and no $2 now): returns its table.
UPDATE webhook._subscriptions s
   SET order_key = pg_catalog.array_replace(s.order_key, $2::pg_catalog.text, $3::pg_catalog.text)
 WHERE s.id OPERATOR(pg_catalog.=) $1
   AND $2::pg_catalog.text OPERATOR(pg_catalog.=) ANY (s.order_key)
   AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
                  AND a.attname OPERATOR(pg_catalog.=) $3::pg_catalog.name
                  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
                      AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
RETURNING s.target::pg_catalog.oid
