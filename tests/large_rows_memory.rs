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
    subscribe(&mut db, "t", "t", "http://127.0.0.1:9/t", "");
    exec(&mut db, "SELECT webhook.pause('t')");
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
