-- A new subscription's row ($1 id .. $18), with its intervals given in milliseconds.
INSERT INTO webhook._subscriptions
       (id, uid, name, target, url, events, secret, headers, timeout,
        max_attempts, retry_schedule, owner, trigger_name, format, filter,
        columns, exclude_columns, skip_unchanged)
VALUES ($1, $2, $3, $4::pg_catalog.oid::pg_catalog.regclass, $5, $6, $7, $8::pg_catalog.jsonb,
        $9::pg_catalog.int8 * interval '1 millisecond', $10,
        CASE WHEN $11::pg_catalog.int8[] IS NULL THEN NULL
             ELSE ARRAY(SELECT d * interval '1 millisecond'
                          FROM unnest($11::pg_catalog.int8[]) WITH ORDINALITY AS u(d, o)
                         ORDER BY o) END,
        $12::pg_catalog.oid::pg_catalog.regrole, $13, $14, $15, $16, $17, $18)
