//! Per-key order's test helpers: a receiver refusing one event twice, and what it accepted.

use postgres::Client;

use super::cluster::Cluster;
use super::receiver::{Receiver, Reply, Request};
use super::{exec, subscribe};

/// A receiver that answers 503 to the first two requests of the event whose `seq` is 1.
pub fn refusing_seq_1_twice() -> Receiver {
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Receiver::with(move |req: &Request, _| {
        if req.json()["record"]["seq"].as_i64() == Some(1)
            && refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2
        {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    })
}

/// The `seq` of each accepted request, in the order they were accepted.
pub fn seqs(rx: &Receiver) -> Vec<i64> {
    rx.accepted()
        .iter()
        .map(|r| r.json()["record"]["seq"].as_i64().unwrap_or(-1))
        .collect()
}

/// A retry schedule that tries again soon.
pub const RETRY_SOON: &str =
    ", retry_schedule => ARRAY['300 milliseconds']::interval[], max_attempts => 10";

/// Table acct (id, account, note) keyed by `key` with `extra` made first, its subscription
/// paused and one row written: an event queued, its key hashed. Returns a superuser's session.
pub fn paused_with_an_event(pg: &Cluster, extra: &str, columns: &str, key: &str) -> Client {
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!("{extra}; CREATE TABLE acct (id int PRIMARY KEY, {columns})"),
    );
    subscribe(
        &mut db,
        "acct",
        "acct",
        &rx.url("/acct"),
        &format!(", order_key => ARRAY[{key}]"),
    );
    exec(
        &mut db,
        "SELECT webhook.pause('acct'); INSERT INTO acct (id) VALUES (1)",
    );
    db
}
