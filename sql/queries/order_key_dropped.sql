-- A live subscription with events queued whose order key names a column that the command
-- firing webhook_on_sql_drop dropped from its table (ALTER TABLE ... DROP COLUMN, or a cascade
-- from a type, domain, collation, schema or extension; not a table dropped whole): its name,
-- table and the column. Their keys were hashed from that column's values; later ones would
-- hash a constant in its place. With its id.
SELECT s.id, s.name, s.target::pg_catalog.regclass::pg_catalog.text, d.address_names[3]
  FROM pg_catalog.pg_event_trigger_dropped_objects() d
  JOIN webhook._subscriptions s ON s.target::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid
 WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.objsubid OPERATOR(pg_catalog.>) 0
   AND s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
   AND d.address_names[3] OPERATOR(pg_catalog.=) ANY (s.order_key)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() t
                    WHERE t.classid OPERATOR(pg_catalog.=) d.classid
                      AND t.objid OPERATOR(pg_catalog.=) d.objid
                      AND t.objsubid OPERATOR(pg_catalog.=) 0)
   AND EXISTS (SELECT FROM webhook._event_queue q
                WHERE q.subscription_id OPERATOR(pg_catalog.=) s.id AND q.ordered)
 LIMIT 1
