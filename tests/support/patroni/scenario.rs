//! What every Patroni test starts from (tests/patroni_failover.rs, tests/patroni_commits.rs): a
//! cluster whose leader has delivered a first row, and the checks on what the receiver accepted
//! against what the table holds.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;

use super::super::cluster::wait_until;
use super::super::receiver::Receiver;
use super::super::{exec, subscribe, LONG_WAIT};
use super::senders::{by_row, receiver, Delivery, Sender};
use super::{signal, Ha};

/// A failed attempt is retried soon, so nothing waits on the default 5 s schedule.
const FAST_RETRY: &str =
    ", retry_schedule => ARRAY['200 milliseconds']::interval[], max_attempts => 100";
/// The row the setup sends first, to see the leader deliver.
pub const WARM_UP: i64 = 0;

pub struct Setup {
    pub ha: Ha,
    _rx: Receiver,
    pub log: Arc<Mutex<Vec<Delivery>>>,
    /// Connected to the leader, node 0.
    pub db: Client,
}

/// A cluster (node 0 leads), a receiver that answers after `delay`, table `t` subscribed, and
/// one row delivered by the leader.
pub fn setup(synchronous: bool, delay: Duration) -> Setup {
    let ha = Ha::start(synchronous);
    let (rx, log) = receiver(&ha, delay);
    let mut db = ha.nodes[0].connect();
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook; CREATE TABLE t (id bigint PRIMARY KEY, note text)",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), FAST_RETRY);
    // pg_webhook's settings come from Patroni's configuration, the same on both nodes.
    for node in &ha.nodes {
        let row = node
            .connect()
            .query_one(
                "SELECT setting, source, sourcefile FROM pg_settings
                  WHERE name = 'pg_webhook.allowed_destinations'",
                &[],
            )
            .unwrap_or_else(|e| panic!("pg_webhook.allowed_destinations on {}: {e}", node.name));
        let (setting, source, file): (String, String, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            (setting.as_str(), source.as_str()),
            ("127.0.0.1", "configuration file"),
            "{}",
            node.name
        );
        assert!(
            file.as_deref()
                .is_some_and(|f| f.ends_with("/postgresql.conf")),
            "{} reads it from {file:?}, not Patroni's postgresql.conf",
            node.name
        );
    }
    exec(
        &mut db,
        &format!("INSERT INTO t VALUES ({WARM_UP}, 'warm-up')"),
    );
    wait_until(LONG_WAIT, "the warm-up row to arrive", || {
        by_row(&log).contains_key(&WARM_UP)
    });
    assert_eq!(
        by_row(&log)[&WARM_UP][0].node,
        Some(0),
        "the leader sent the warm-up row"
    );
    Setup {
        ha,
        _rx: rx,
        log,
        db,
    }
}

/// Stops (SIGSTOP) the walsender of the leader `db` is on: nothing more reaches the replica.
pub fn freeze_walsender(db: &mut Client) -> i32 {
    let rows = db
        .query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'",
            &[],
        )
        .unwrap_or_else(|e| panic!("finding the walsender: {e}"));
    assert_eq!(rows.len(), 1, "one walsender, to the replica");
    let pid = rows[0].get(0);
    signal(pid, libc::SIGSTOP);
    pid
}

/// The ids in table `t` on the node `db` is connected to.
pub fn committed(db: &mut Client) -> BTreeSet<i64> {
    db.query("SELECT id FROM t", &[])
        .unwrap_or_else(|e| panic!("reading t: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits until every row of `rows` was accepted; then checks no row arrived under two
/// webhook-ids and none arrived that did not commit.
pub fn wait_all_delivered(log: &Mutex<Vec<Delivery>>, rows: &BTreeSet<i64>) {
    wait_until(
        LONG_WAIT,
        &format!("all {} rows to arrive", rows.len()),
        || {
            let got = by_row(log);
            rows.iter().all(|r| got.contains_key(r))
        },
    );
    for (row, deliveries) in by_row(log) {
        assert!(
            rows.contains(&row),
            "row {row} arrived but is not in the table: {deliveries:?}"
        );
        let ids: HashSet<&str> = deliveries.iter().map(|d| d.webhook_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            1,
            "row {row} arrived under several webhook-ids: {ids:?}"
        );
    }
    // A sender that had closed its end before its connection was accepted (a stopping node's
    // worker, see senders.rs) is no stranger; a live process outside the cluster would be.
    let unknown = log
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.sender == Sender::Unknown)
        .count();
    assert_eq!(unknown, 0, "requests no node of the cluster sent");
}
