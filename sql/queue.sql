-- pg_webhook: the event queue and what follows an event out of it: the archive, the attempt
-- log, the running totals, the callback queue, backfills and the batches out. Private tables
-- ("_"); users read them through the views (views.sql). After schema.sql.

-- Event ids also form webhook-ids, so the sequence is dumped too: after a restore, new events
-- never reuse an id a receiver has already seen (and de-duplicated on). The capture trigger
-- takes ids in blocks of 1024 (one nextval per batch of rows), so ids are unique and increase
-- in capture order but are not dense.
CREATE SEQUENCE webhook._event_id_seq INCREMENT BY 1024;
SELECT pg_catalog.pg_extension_config_dump('webhook._event_id_seq', '');

-- API: Private. Events waiting for (another) delivery attempt. Written by the capture trigger
-- in the writer's transaction, so an event exists exactly when its change committed. Kept
-- small: a finished event moves to _event_archive in the same transaction that records it.
--
-- New events (next_attempt_at IS NULL) are found through the key (txid, id): the worker
-- remembers how far it has read, bounded below by the oldest transaction that could still
-- commit more, so it never re-walks the dead index entries that delivered events leave behind.
-- Events waiting for a retry carry next_attempt_at and are found through their own (small)
-- index. Outcomes are recorded by the key: where the claim found the row (its ctid) only if
-- the row there still has the event's key, by looking the key up otherwise (VACUUM FULL,
-- CLUSTER, pg_repack and updates move rows); the key is also the replica identity a FOR ALL
-- TABLES publication needs.
CREATE TABLE webhook._event_queue (
    id              bigint NOT NULL,
    txid            xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    subscription_id integer NOT NULL,
    op              text NOT NULL,                 -- INSERT, UPDATE, DELETE
    table_schema    text NOT NULL,
    table_name      text NOT NULL,
    record          jsonb,
    old_record      jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    -- Attempts made before the current series (a replay starts a new series): the retry
    -- schedule counts from here, attempt numbers keep growing.
    series_start    integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,                   -- NULL: new, due now; infinity: parked
    last_error      text,
    -- Of an ordered subscription: delivered one at a time by id, which the capture trigger
    -- takes under the subscription's lock, so id order is commit order.
    ordered         boolean NOT NULL DEFAULT false,
    -- Added in 0.3.0. Size of record and old_record (uncompressed): a claim stops at a byte
    -- budget, so a backlog of large rows cannot make a worker load them all at once.
    payload_bytes   integer NOT NULL DEFAULT 0,
    -- The batch the event was last sent in (named after its first event): a retry goes out in
    -- the same batch, with the same webhook-id. NULL: not sent in a batch yet.
    batch           bigint,
    -- Of an ordered event: a hash of its order key's values (0 for `ordered => true`, one key
    -- for the whole subscription). NULL for unordered events.
    order_key       bigint,
    -- Of a subscription grouped by transaction: which part of its transaction's request the
    -- event goes in (1-based; NULL until the transaction is cut into parts), and how many
    -- events the transaction has for the subscription (on the events of its last part, read
    -- off the last one: negative while the transaction is cut again, see
    -- sql/worker/reopen_cut.sql).
    part            integer,
    tx_events       integer,
    -- The WAL timeline the event was captured on, and the one its transaction (txid) ran on
    -- (a replay's, for a replayed event). A failover or a point-in-time recovery starts a new
    -- timeline, which may hand out again the event and transaction ids the abandoned one had
    -- sent: webhook-ids name the timeline when it is not the first (see message_id in
    -- src/core/payload.rs).
    timeline        integer NOT NULL DEFAULT 1,
    tx_timeline     integer NOT NULL DEFAULT 1,
    CONSTRAINT event_queue_key PRIMARY KEY (txid, id)
);
CREATE INDEX event_queue_scheduled ON webhook._event_queue (next_attempt_at, id)
    WHERE next_attempt_at IS NOT NULL;
-- Each subscription's due events, for the claim that reads past a subscription holding its
-- share (claim_scheduled_others.sql). Only events with a due time: capture never writes it.
CREATE INDEX event_queue_due_by_subscription
    ON webhook._event_queue (subscription_id, next_attempt_at, id)
    WHERE next_attempt_at IS NOT NULL;
-- The heads of each ordered subscription's queue and of each of its order keys; unordered
-- writes never touch them.
CREATE INDEX event_queue_ordered ON webhook._event_queue (subscription_id, id) WHERE ordered;
CREATE INDEX event_queue_order_key ON webhook._event_queue (subscription_id, order_key, id)
    WHERE ordered;
-- Vacuum often (the table churns) and never truncate it: truncating takes an ACCESS EXCLUSIVE
-- lock that stalls every writer of a subscribed table, and the freed space is reused anyway.
ALTER TABLE webhook._event_queue SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);

-- API: Private. Events that are finished: delivered, or dead after their last attempt. The last
-- attempt's details live on the row itself (final_*), so finishing an event is one insert.
CREATE TABLE webhook._event_archive (
    id                     bigint PRIMARY KEY,
    subscription_id        integer NOT NULL,
    op                     text NOT NULL,
    table_schema           text NOT NULL,
    table_name             text NOT NULL,
    record                 jsonb,
    old_record             jsonb,
    created_at             timestamptz NOT NULL,
    attempts               integer NOT NULL,
    series_start           integer NOT NULL DEFAULT 0,
    last_error             text,
    status                 text NOT NULL,
    finished_at            timestamptz NOT NULL DEFAULT now(),
    final_started_at       timestamptz,
    final_duration_ms      double precision,
    final_status_code      integer,
    final_response_excerpt text,
    final_error            text,
    CONSTRAINT status_is_final CHECK (status IN ('delivered', 'dead')),
    -- Why the subscription's callback failed for this event (NULL: it ran, or there is none).
    callback_error         text,
    -- Added in 0.3.0: the size of the row images, carried back into the queue by a replay.
    payload_bytes          integer NOT NULL DEFAULT 0,
    -- Its order key (see the queue), so a replay keeps its place among its key's events.
    order_key              bigint,
    -- The timeline it was captured on (see the queue), part of its webhook-id.
    timeline               integer NOT NULL DEFAULT 1
);
-- Retention purges and the stats view read recent history by time.
CREATE INDEX event_archive_finished ON webhook._event_archive (finished_at);

-- API: Private. Every attempt that was not an event's last (those are on the archive row).
CREATE TABLE webhook._attempts (
    event_id         bigint NOT NULL,
    attempt          integer NOT NULL,
    subscription_id  integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      double precision NOT NULL,
    status_code      integer,
    response_excerpt text,
    error            text,
    outcome          text NOT NULL,
    PRIMARY KEY (event_id, attempt),
    CONSTRAINT outcome_is_known CHECK (outcome IN ('delivered', 'retry', 'dead'))
);
CREATE INDEX attempts_started ON webhook._attempts (started_at);

-- API: Private. Running totals per subscription, for monitoring (counters that only grow, unlike
-- the history that retention purges): events delivered, events dead, and attempts that failed
-- (those followed by a retry and the last one of a dead event). Each delivery worker adds to its
-- own row in the transaction that records the outcomes, so workers never wait on one another.
CREATE TABLE webhook._delivery_totals (
    subscription_id integer NOT NULL,
    worker          integer NOT NULL,
    delivered       bigint NOT NULL DEFAULT 0,
    dead            bigint NOT NULL DEFAULT 0,
    failed_attempts bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (subscription_id, worker)
) WITH (fillfactor = 50);

-- API: Private. The subscriptions whose triggers pg_webhook made, or saw complete, in this
-- database. Not dumped with the subscriptions: after a restore it is empty, so the worker's
-- trigger check does not take a restored subscription whose triggers pg_restore has yet to
-- create (they come after the table data) for one whose trigger was dropped by hand.
CREATE TABLE webhook._triggers_made (subscription_id integer PRIMARY KEY);

-- API: Private. Finished events whose subscription's callback has yet to run. Written in the
-- transaction that records the outcome, removed in the one that runs the callback: a callback
-- is never lost, and its effects commit together with its removal from here.
CREATE TABLE webhook._callback_queue (
    event_id         bigint PRIMARY KEY,
    subscription_id  integer NOT NULL,
    response_headers jsonb,
    -- How many times a runner started the callback (one that died mid-call leaves it counted).
    starts           integer NOT NULL DEFAULT 0
);

-- API: Private. One row per backfill (webhook.backfill()): a subscription's rows that the table
-- already had, queued as BACKFILL events in chunks by primary key, each chunk in its own short
-- transaction that also records how far it got (last_key), so a crash or restart resumes after
-- the last committed chunk. At most one runs per subscription.
CREATE TABLE webhook._backfills (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id integer NOT NULL,
    -- An extra condition of the caller's over the table's columns (NULL: every row).
    filter          text,
    -- The primary key's columns when it started; a chunk reads the rows after last_key in
    -- their order.
    key_columns     text[] NOT NULL,
    -- The primary key of the last row read, as text per column (NULL: none read yet).
    last_key        text[],
    state           text NOT NULL DEFAULT 'running',
    rows_sent       bigint NOT NULL DEFAULT 0,
    rows_estimated  bigint NOT NULL DEFAULT 0,
    started_by      regrole NOT NULL,
    -- The subscription's owner when it started: its filter runs as that role only (one that
    -- changed hands meanwhile, webhook.set_owner(), stops it).
    owner           regrole NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    last_error      text,
    -- The transaction that started it: every chunk's events have a later txid, so counting
    -- what is still queued reads only the queue's newer part (the key is (txid, id)).
    started_txid    xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    -- Times a runner ended while running its chunks (the watchdog ends a runner whose chunk
    -- goes on after its cancel), over its life; the third fails the backfill.
    interruptions   integer NOT NULL DEFAULT 0,
    -- Chunks that failed in a row (kept here: the runner process that ran them hands over to
    -- another when another owner's turn comes); the third fails the backfill. The next chunk
    -- runs no sooner than retry_at.
    failures        integer NOT NULL DEFAULT 0,
    retry_at        timestamptz,
    -- Chunks in a row that gave up waiting for a lock or lost a deadlock: not failures, but
    -- each doubles the wait before the next (up to 10 s), so a backfill held up by a long
    -- writer costs the runner little for as long as it waits.
    waits           integer NOT NULL DEFAULT 0,
    CONSTRAINT backfill_state_is_known CHECK (state IN ('running', 'done', 'canceled', 'failed'))
);
CREATE UNIQUE INDEX backfills_one_running ON webhook._backfills (subscription_id)
    WHERE state = 'running';

-- API: Private. The runner process (its pid) running a backfill's chunks now: a row from the
-- start of a round of its chunks (mark_running.sql) to the round's end (end_round.sql); one
-- another process left is its runner having ended while running them (the watchdog, a crash,
-- a restart). Apart from the backfill's row, which its owner's cancel_backfill() locks for as
-- long as the owner's transaction stays open: ending a round must neither wait for that nor,
-- giving up, leave a mark the next runner would count as an interruption.
CREATE TABLE webhook._backfill_rounds (
    backfill_id bigint PRIMARY KEY,
    pid         integer NOT NULL
);

-- The archive, the attempt log and the callback queue churn like the queue: the retention purge
-- (or the callback runner) deletes what the worker inserts, at the same rate. They are vacuumed
-- often, so freed space is reused and the footprint stays flat under a steady load, and never
-- truncated (the ACCESS EXCLUSIVE lock that takes would stall the worker).
ALTER TABLE webhook._event_archive SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);
ALTER TABLE webhook._attempts SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);
-- The callback runner takes turns between subscriptions (pending_callbacks.sql): it finds
-- each one's oldest callbacks through this index.
CREATE INDEX callback_queue_subscription ON webhook._callback_queue (subscription_id, event_id);
ALTER TABLE webhook._callback_queue SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);

-- API: Private. Batches of new events out (sent, their outcome not yet recorded), one row each:
-- the events it carries, in the order sent. A delivery worker writes its batches here before
-- it sends them and removes each in the transaction that records its outcome; a worker that
-- starts takes the rows its share's previous worker left (it died, or the server stopped,
-- with them out), and those of a server that ran another count of workers, and puts their
-- events back as that batch (the queue's `batch` column), so they go out again as it, under
-- its webhook-id. A retried batch is on its events already.
CREATE TABLE webhook._batches_out (
    subscription_id integer NOT NULL,
    -- The batch (its first event's id), as in the queue's `batch` column.
    batch           bigint NOT NULL,
    -- The delivery worker that sent it (its share of the events, 0-based), and how many
    -- shared them then (pg_webhook.workers as the server resolved it).
    worker          integer NOT NULL,
    workers         integer NOT NULL,
    -- The events' keys in the queue: txid (as a number) and id.
    txids           bigint[] NOT NULL,
    ids             bigint[] NOT NULL,
    PRIMARY KEY (subscription_id, batch)
);
ALTER TABLE webhook._batches_out SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);
