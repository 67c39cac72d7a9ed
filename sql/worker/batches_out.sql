-- Writes down batches of new events before they are sent (see webhook._batches_out), one row
-- each: its subscription ($1), its batch ($2) and its events, elements $3 to $4 (1-based,
-- inclusive) of the txids ($5) and ids ($6) of all of them, in the order sent. (Slices of two
-- arrays, not an aggregate of their elements: ten times cheaper for batches of 100.) The
-- worker's share and the count of workers are the markers below. A batch of the same name
-- already there (one a worker sent, recorded and then could not forget, whose first event was
-- replayed) is replaced.
INSERT INTO webhook._batches_out AS b (subscription_id, batch, worker, workers, txids, ids)
SELECT u.subscription_id, u.batch, /*worker*/, /*workers*/, $5[u.first:u.last],
       $6[u.first:u.last]
  FROM unnest($1::pg_catalog.int4[], $2::pg_catalog.int8[], $3::pg_catalog.int4[],
              $4::pg_catalog.int4[]) AS u(subscription_id, batch, first, last)
    ON CONFLICT (subscription_id, batch) DO UPDATE
   SET worker = excluded.worker, workers = excluded.workers, txids = excluded.txids,
       ids = excluded.ids
