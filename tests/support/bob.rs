//! bob: a `webhook_admin` member who subscribes a table he may read, then loses access to it.

use super::cluster::{wait_until, Cluster};
use super::receiver::Receiver;
use super::{count, exec, subscribe, WAIT};

/// The table bob subscribes.
pub const LEDGER: &str = "CREATE TABLE ledger (id int PRIMARY KEY, tenant text, secret text)";

/// bob, a webhook_admin member who may read `ledger` and attach triggers to it.
pub fn bob_reads_ledger(su: &mut postgres::Client) {
    bob_reads(su, LEDGER);
}

/// bob, a webhook_admin member who may read `ledger`, made by `ledger_ddl`, and attach
/// triggers to it.
pub fn bob_reads(su: &mut postgres::Client, ledger_ddl: &str) {
    exec(
        su,
        &format!(
            "CREATE ROLE bob LOGIN; GRANT webhook_admin TO bob;
             GRANT CREATE ON SCHEMA public TO bob;
             {ledger_ddl};
             GRANT SELECT, TRIGGER ON ledger TO bob;"
        ),
    );
}

/// The `secret` of each of `who`'s visible events, in id order (NULL where the row is not
/// shown).
pub fn secrets_seen(who: &mut postgres::Client) -> Vec<Option<String>> {
    who.query(
        "SELECT record->>'secret' FROM webhook.events ORDER BY id",
        &[],
    )
    .expect("reading webhook.events")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A cluster (with `conf`) where bob has subscribed `ledger` (made by `ledger_ddl`) to a
/// receiver of its own.
pub fn bob_subscribed(
    conf: &[&str],
    ledger_ddl: &str,
) -> (Cluster, Receiver, postgres::Client, postgres::Client) {
    let pg = Cluster::start(conf);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    bob_reads(&mut su, ledger_ddl);
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", &rx.url("/bob"), "");
    (pg, rx, su, bob)
}

/// bob subscribes `ledger`, then loses SELECT, and a row is written.
pub fn revoked_after_subscribing() -> (Cluster, Receiver, postgres::Client, postgres::Client) {
    let (pg, rx, mut su, bob) = bob_subscribed(&["pg_webhook.poll_interval = '100ms'"], LEDGER);
    exec(
        &mut su,
        "REVOKE SELECT ON ledger FROM bob;
         INSERT INTO ledger VALUES (1, 'a', 'held');",
    );
    (pg, rx, su, bob)
}

/// Whether bob's one event is parked (held), not sent.
pub fn held(su: &mut postgres::Client) -> bool {
    count(
        su,
        "SELECT count(*) FROM webhook.events WHERE table_name = 'ledger' AND status = 'parked'",
    ) == 1
}

/// Waits for the worker to hold bob's event, then checks that neither his receiver nor he saw
/// its row.
pub fn held_from_bob(rx: &Receiver, su: &mut postgres::Client, bob: &mut postgres::Client) {
    wait_until(WAIT, "the worker to hold bob's event", || held(su));
    assert!(
        rx.requests().iter().all(|r| r.path != "/bob"),
        "a row bob lost access to went to him"
    );
    assert_eq!(secrets_seen(bob), vec![None]);
}

/// alice and bob, webhook_admin members who may create tables in `public`; the clients of a
/// superuser, alice and bob.
pub fn alice_and_bob(pg: &Cluster) -> (postgres::Client, postgres::Client, postgres::Client) {
    let (su, [alice, bob]) = super::webhook_admins(pg, ["alice", "bob"]);
    (su, alice, bob)
}

/// alice's subscription (the superuser's) on a table `orders`, and bob's on ledger (with
/// `bobs_options`), both to `rx`: the clients of the superuser and bob.
pub fn orders_and_ledger(
    pg: &Cluster,
    rx: &Receiver,
    bobs_options: &str,
) -> (postgres::Client, postgres::Client) {
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    exec(&mut su, "CREATE TABLE orders (id int PRIMARY KEY)");
    subscribe(&mut su, "alices", "orders", &rx.url("/alice"), "");
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", &rx.url("/bob"), bobs_options);
    (su, bob)
}
