-- pg_webhook: private machinery nobody calls directly: the event triggers that follow dropped,
-- created and attached tables, the claim budget of the delivery workers, and where callback OIDs
-- were read.

-- API: Private. A dropped table or capture trigger: the subscriptions it served are marked
-- unsubscribed with the reason (objects matched by OID: a trigger of the same name on another
-- table means nothing), and their queued events — parked ones too — are still delivered.
CREATE FUNCTION webhook._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables oid[];
    what text[];
    trigger_tables oid[];
BEGIN
    -- DROP EXTENSION removes our own tables before this runs.
    IF pg_catalog.to_regclass('webhook._subscriptions') IS NULL THEN
        RETURN;
    END IF;
    SELECT pg_catalog.array_agg(d.objid ORDER BY d.objid),
           pg_catalog.array_agg(d.object_type || ' ' || d.object_identity ORDER BY d.objid)
      INTO tables, what
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0;
    -- The tables dropped triggers were on (those still there): only subscriptions over them
    -- are checked for a missing trigger.
    SELECT pg_catalog.array_agg(DISTINCT t.relid)
      INTO trigger_tables
      FROM pg_catalog.pg_event_trigger_dropped_objects() d,
           LATERAL (SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(d.address_names[1])
                        || '.' || pg_catalog.quote_ident(d.address_names[2]))::pg_catalog.oid
                        AS relid) t
     WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND t.relid IS NOT NULL;
    PERFORM webhook._on_dropped(COALESCE(tables, '{}'), COALESCE(what, '{}'),
                                COALESCE(trigger_tables, '{}'));
END
$$;
COMMENT ON FUNCTION webhook._on_sql_drop() IS
    'Internal: event trigger that marks subscriptions whose table or capture trigger was dropped.';
CREATE EVENT TRIGGER webhook_on_sql_drop ON sql_drop EXECUTE FUNCTION webhook._on_sql_drop();
-- Also under session_replication_role = replica (logical replication apply, some restores).
ALTER EVENT TRIGGER webhook_on_sql_drop ENABLE ALWAYS;

-- API: Private. A created, attached or detached partition (or inheritance child): the
-- subscriptions of the tables above it get their triggers on it, or lose them. pg_partman and
-- any CREATE TABLE ... PARTITION OF are covered this way. Order keys follow a renamed column,
-- and a key column is neither retyped nor added back while its subscription has events queued
-- (src/triggers/key_columns.rs). In C, because it must see the statement: any other ALTER
-- TABLE is left alone (see src/triggers/events.rs).
CREATE FUNCTION webhook._on_ddl() RETURNS event_trigger
LANGUAGE c
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pg_webhook_on_ddl';
COMMENT ON FUNCTION webhook._on_ddl() IS
    'Internal: event trigger that puts subscriptions'' capture triggers on new and attached partitions, and takes them off detached ones.';
CREATE EVENT TRIGGER webhook_on_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE SCHEMA', 'CREATE FOREIGN TABLE',
                 'ALTER FOREIGN TABLE', 'ALTER TYPE', 'CREATE TRIGGER')
    EXECUTE FUNCTION webhook._on_ddl();
ALTER EVENT TRIGGER webhook_on_ddl ENABLE ALWAYS;

-- API: Private. A claim's byte budget, counted as its rows are read (src/queue/room.rs). Only
-- the delivery workers call it, as the bootstrap superuser.
CREATE FUNCTION webhook._claim_room(bytes integer, budget bigint) RETURNS integer
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pg_webhook_claim_room';
COMMENT ON FUNCTION webhook._claim_room(integer, bigint) IS
    'Internal: what a delivery worker''s claim makes of a row, by the bytes read before it (0 taken, 1 first past the budget, 2 left out).';

COMMENT ON FUNCTION webhook._order_lock() IS
    'Internal: the BEFORE statement trigger of an ordered subscription; takes its order lock before the statement locks any row.';
COMMENT ON FUNCTION webhook._on_dropped(oid[], text[], oid[]) IS
    'Internal: called by the webhook_on_sql_drop event trigger with the tables a command dropped, and the tables it dropped triggers of.';
COMMENT ON FUNCTION webhook._sync_all_triggers() IS
    'Internal: brings every subscription''s triggers in line with what its row asks for (used by upgrades).';

-- Trigger and event-trigger machinery runs as the extension's owner; nobody calls it directly.
-- CREATE TRIGGER checks EXECUTE on the trigger function, so only pg_webhook itself can attach
-- a capture trigger to a table.
REVOKE ALL ON FUNCTION
    webhook._capture(), webhook._order_lock(),
    webhook._on_sql_drop(), webhook._on_ddl(),
    webhook._on_dropped(oid[], text[], oid[]),
    webhook._sync_all_triggers(), webhook._in_flight(),
    webhook._claim_room(integer, bigint), webhook._worker_count(),
    webhook._stuck_runners()
FROM PUBLIC;
-- The stats view reads it as the querying role.
GRANT EXECUTE ON FUNCTION webhook._in_flight() TO webhook_admin;
-- subscription_stats calls it as the querying role, and monitoring roles read that view.
GRANT EXECUTE ON FUNCTION webhook._in_flight() TO pg_monitor;

-- Nobody reads or writes the private tables directly; the views and functions are the API.
REVOKE ALL ON webhook._subscriptions, webhook._event_queue, webhook._event_archive,
              webhook._attempts, webhook._callback_queue, webhook._delivery_totals,
              webhook._triggers_made, webhook._batches_out FROM PUBLIC;

-- API: Private. An event's row images' size as text (src/capture/text_size.rs): replays of
-- events archived before 0.3.0, and their callbacks, which have none recorded, count them with
-- it.
CREATE FUNCTION webhook._image_bytes(record jsonb, old_record jsonb) RETURNS integer
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pg_webhook_image_bytes';
REVOKE ALL ON FUNCTION webhook._image_bytes(jsonb, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION webhook._image_bytes(jsonb, jsonb) IS
    'Internal: the size of an event''s row images (either may be null) as text, which is what a delivery worker reads: their sizes uncompressed plus what their numbers grow by when written out, at most 2147483647.';

-- Where a subscription's callback OID was read (see _subscriptions.callback_oid): this copy of
-- the database and this cluster, which pg_upgrade (new function OIDs) does not keep.
CREATE FUNCTION webhook._binding_key() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._instance_id() OPERATOR(pg_catalog.||) '/'
             OPERATOR(pg_catalog.||) webhook._system_identifier() $$;
REVOKE ALL ON FUNCTION webhook._binding_key() FROM PUBLIC;
COMMENT ON FUNCTION webhook._binding_key() IS
    'Internal: which copy of the database and which cluster a callback OID was read in.';
REVOKE ALL ON FUNCTION webhook._system_identifier() FROM PUBLIC;
COMMENT ON FUNCTION webhook._system_identifier() IS
    'Internal: this cluster''s system identifier, which pg_upgrade does not keep.';
