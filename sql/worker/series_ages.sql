-- How long ago (in seconds) the current series of attempts of each event began: the logged
-- start of the series' first attempt ($2) of each event ($1). No row for an attempt that is
-- not logged. For events whose schedule's attempts are spent while the receiver asks to be
-- tried again (see past_the_count in src/core/retry.rs).
SELECT u.event_id,
       pg_catalog.date_part('epoch', pg_catalog.now() - t.started_at)::pg_catalog.float8
  FROM unnest($1::pg_catalog.int8[], $2::pg_catalog.int4[]) AS u(event_id, attempt)
  JOIN webhook._attempts t ON t.event_id = u.event_id AND t.attempt = u.attempt
