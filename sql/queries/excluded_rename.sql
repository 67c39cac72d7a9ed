-- Subscriptions $1 that leave out column $2 (exclude_columns) leave it out under its new name
-- $3, if their table's column was renamed (has $3 and no $2 now): returns their tables. Left
-- by name, a renamed column of personal data went out from then on.
UPDATE webhook._subscriptions s
   SET exclude_columns = pg_catalog.array_replace(s.exclude_columns, $2::pg_catalog.text,
                                                  $3::pg_catalog.text)
 WHERE s.id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[])
   AND $2::pg_catalog.text OPERATOR(pg_catalog.=) ANY (s.exclude_columns)
   AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
                  AND a.attname OPERATOR(pg_catalog.=) $3::pg_catalog.name
                  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
                      AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
RETURNING s.target::pg_catalog.oid
