-- A subscription's delivery options ($1 id): apart from the insert, so the 0.1.0 entry point
-- keeps working on a 0.1.0 schema (between installing a new library and ALTER EXTENSION UPDATE).
UPDATE webhook._subscriptions
   SET ordered = $2, max_in_flight = $3, rate_limit = $4,
       callback = $5::pg_catalog.oid::pg_catalog.regprocedure
 WHERE id = $1
