//! What large rows cost the processes that turn them into events: a backfill's runner and a
//! writer's capture hold a bounded number of bytes of them at once, whatever the table holds,
//! and get their work done. One scenario per test; each failed on a pg_webhook that read or
//! rendered a whole chunk or statement of large rows before writing any.

mod support;

use support::backfill::wait_state;
use support::cluster::Cluster;
use support::{count, exec, peak_mib, subscribe};

/// `rows` rows of about `kib` KiB of text each (compressible: the table stays small on disk),
/// in table `t` (id, body).
fn large_rows(db: &mut postgres::Client, rows: u32, kib: u32) {
    exec(
        db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, body text);
             INSERT INTO t SELECT g, repeat(md5(g::text), {kib} * 32) FROM generate_series(1, {rows}) g"
        ),
    );
}

/// Subscription `table` on table `table` with `options`, paused: its events stay in the queue,
/// counted there, and no receiver has to take them.
fn paused(db: &mut postgres::Client, table: &str, options: &str) {
    subscribe(
        db,
        table,
        table,
        &format!("http://127.0.0.1:9/{table}"),
        options,
    );
    exec(db, &format!("SELECT webhook.pause('{table}')"));
}

/// 500 rows of 600 KiB, each deliverable under the default 1 MB limit: a chunk read all 500
/// (300 MB, the runner past a gigabyte) before queuing any, could not render and queue them
/// within its 2 s, and failed three times: the backfill ended `failed` with nothing sent, and
/// could never be done. A chunk now stops reading at 16 MiB.
#[test]
fn a_backfill_of_large_rows_is_done_in_chunks_the_runner_can_hold() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    large_rows(&mut db, 500, 600);
    // Paused: the events wait in the queue, counted there, and no receiver has to take 300 MB.
    paused(&mut db, "t", "");
    exec(&mut db, "SELECT webhook.backfill('t')");
    wait_state(&mut db, "t", "done");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue WHERE op = 'BACKFILL' AND record IS NOT NULL"
        ),
        500
    );
    let runner = pg.callback_runner_pid(&mut db);
    let peak = peak_mib(runner);
    assert!(
        peak < 400,
        "the callback runner held {peak} MiB at its peak"
    );
}

/// The peak memory (VmHWM, MiB) of a fresh session's backend after it ran `sql`.
fn writer_peak(pg: &Cluster, sql: &str) -> u64 {
    let mut writer = pg.connect("postgres");
    let pid = count(&mut writer, "SELECT pg_backend_pid()::bigint") as i32;
    exec(&mut writer, sql);
    peak_mib(pid)
}

/// 400 rows of 900 kB in one `INSERT … SELECT` to a subscribed table: capture wrote the queue
/// in batches of 1,000 rows, so it held every image of the statement at once (the writer at
/// 1.4 GB, where the same statement without a subscription took 155 MB). A batch is now
/// written once its images reach 16 MiB.
#[test]
fn a_statement_of_large_rows_is_queued_in_batches_the_writer_can_hold() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    large_rows(&mut db, 400, 900);
    exec(&mut db, "CREATE TABLE copy (id int PRIMARY KEY, body text)");
    paused(&mut db, "copy", "");
    let peak = writer_peak(&pg, "INSERT INTO copy SELECT * FROM t");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue WHERE record IS NOT NULL"
        ),
        400
    );
    assert!(peak < 400, "the writer held {peak} MiB at its peak");
}

/// The same through a shaped subscription (`exclude_columns`), whose capture rendered the
/// images of every chosen row of the statement, new and old, before queuing any.
#[test]
fn a_shaped_update_of_large_rows_is_queued_in_batches_the_writer_can_hold() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    large_rows(&mut db, 300, 900);
    exec(&mut db, "ALTER TABLE t ADD COLUMN x int NOT NULL DEFAULT 0");
    paused(&mut db, "t", ", exclude_columns => ARRAY['x']");
    let peak = writer_peak(&pg, "UPDATE t SET x = x + 1");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue
              WHERE record IS NOT NULL AND old_record IS NOT NULL AND NOT record ? 'x'"
        ),
        300
    );
    assert!(peak < 400, "the writer held {peak} MiB at its peak");
}

/// An UPDATE of one row of 120 MB: each image is under 160 MiB, so both were built and
/// queued (300 MB of images, the writer past a gigabyte), though together they are over what
/// any worker reads and the event dies unread. The old image now gets what the new one left,
/// and when they are over together neither is kept.
#[test]
fn an_update_whose_images_together_pass_160_mib_keeps_neither() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE one (id int PRIMARY KEY, body text, x int);
         INSERT INTO one VALUES (1, repeat('x', 120000000), 0)",
    );
    paused(&mut db, "one", "");
    let peak = writer_peak(&pg, "UPDATE one SET x = x + 1");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue
              WHERE record IS NULL AND old_record IS NULL AND payload_bytes > 160 * 1024 * 1024"
        ),
        1,
        "the event is queued with its images' size and neither image"
    );
    assert!(peak < 700, "the writer held {peak} MiB at its peak");
}

/// A statement's transition table larger than `work_mem` is read from disk, each row into the
/// memory current as it is read: the shaped path read them into the queue's batch memory,
/// reset once 1,000 events were written, and the next read freed the row its slot still held.
#[test]
fn a_shaped_update_whose_rows_spill_to_disk_queues_every_event() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY, body text, x int NOT NULL DEFAULT 0);
         INSERT INTO t SELECT g, repeat('b', 200) FROM generate_series(1, 5000) g",
    );
    paused(&mut db, "t", ", exclude_columns => ARRAY['x']");
    exec(&mut db, "SET work_mem = '64kB'; UPDATE t SET x = 1");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(DISTINCT (record->>'id')::int) FROM webhook._event_queue
              WHERE record->>'body' = repeat('b', 200) AND old_record->>'id' = record->>'id'"
        ),
        5000
    );
}

/// `skip_unchanged`: an UPDATE that changes no sent column queues nothing, and its compared
/// images were kept in the batch's memory, which nothing written ever reset: 300 unchanged
/// rows of 900 kB held them all.
#[test]
fn an_update_of_unchanged_large_rows_holds_no_images() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    large_rows(&mut db, 300, 900);
    exec(&mut db, "ALTER TABLE t ADD COLUMN x int NOT NULL DEFAULT 0");
    let options = ", exclude_columns => ARRAY['x'], skip_unchanged => true";
    subscribe(&mut db, "t", "t", "http://127.0.0.1:9/t", options);
    let peak = writer_peak(&pg, "UPDATE t SET x = x + 1");
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook._event_queue"),
        0
    );
    assert!(peak < 400, "the writer held {peak} MiB at its peak");
}
