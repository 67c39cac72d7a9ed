-- The OID of the webhook_admin role (no row if it does not exist).
SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'webhook_admin'
