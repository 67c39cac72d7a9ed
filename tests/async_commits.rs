//! A writer with `synchronous_commit = off` commits before its commit record is on disk, and
//! its events can be claimed at once. Were they sent then, a crash before the WAL writer's
//! next flush would lose the transaction after its events went out — and set the event id
//! sequence back, so that the next events went out under webhook-ids a receiver had seen.
//! The worker flushes those commits before it sends their events.

mod support;

use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

#[test]
fn an_asynchronous_commits_events_go_out_only_once_it_is_on_disk() {
    // No autovacuum, and the WAL writer stopped: nothing but the worker would flush the
    // writer's commit before the crash.
    let pg = Cluster::start(&["autovacuum = off"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE orders (id int PRIMARY KEY)");
    subscribe(&mut db, "orders", "orders", &rx.url("/orders"), "");
    let walwriter = text(
        &mut db,
        "SELECT pid::text FROM pg_stat_activity WHERE backend_type = 'walwriter'",
    )
    .expect("a WAL writer")
    .parse::<i32>()
    .expect("a pid");
    pg.kill("STOP", walwriter);
    exec(
        &mut db,
        "SET synchronous_commit = off; INSERT INTO orders VALUES (1)",
    );
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
    pg.stop("immediate");
    pg.pg_ctl_start();
    let mut db = pg.connect("postgres");
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM orders"),
        1,
        "the row whose event went out survived the crash"
    );
}
