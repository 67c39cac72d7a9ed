-- A new subscription's id, from the subscription id sequence.
SELECT pg_catalog.nextval('webhook._subscription_id_seq')::int
