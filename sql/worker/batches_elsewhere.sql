-- Whether batches written down by a server that ran another number of workers than $1 wait for
-- worker 0 to put them back (batches_left.sql). Until it has, another worker reading new events
-- could read theirs too, and send them twice.
SELECT EXISTS (SELECT FROM webhook._batches_out b WHERE b.workers <> $1)
