-- pg_webhook 0.1.0 -> 0.2.0. Run by ALTER EXTENSION pg_webhook UPDATE; every change here is
-- also in the 0.2.0 install script, and a test checks that both give the same catalog.
\echo Use "ALTER EXTENSION pg_webhook UPDATE" to load this file. \quit

-- webhook.ping(): a signed test request to a subscription's endpoint.
CREATE FUNCTION webhook."_ping"(
	"name" TEXT
) RETURNS TABLE (
	"delivered" bool,
	"status_code" INT,
	"duration_ms" double precision,
	"error" TEXT,
	"response_excerpt" TEXT,
	"webhook_id" TEXT
)
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'ping_wrapper';

CREATE FUNCTION webhook.ping(name text)
RETURNS TABLE (delivered boolean, status_code integer, duration_ms double precision,
               error text, response_excerpt text, webhook_id text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM webhook._ping(name) $$;
COMMENT ON FUNCTION webhook.ping(text) IS
$$Send a signed test event (type PING, no rows, in the subscription's format) to its endpoint now and return the outcome.
Works on paused and disabled subscriptions too; nothing is queued or recorded.$$;
COMMENT ON FUNCTION webhook._ping(text) IS 'Internal: implements webhook.ping().';
REVOKE ALL ON FUNCTION webhook.ping(text), webhook._ping(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook.ping(text), webhook._ping(text) TO webhook_admin;
