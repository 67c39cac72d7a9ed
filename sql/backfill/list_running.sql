-- The backfills to work on, oldest first.
SELECT id FROM webhook._backfills WHERE state = 'running' ORDER BY id
