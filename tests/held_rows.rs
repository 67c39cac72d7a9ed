//! A subscriber's transaction left open over its own subscription's row (a pause, a resume)
//! holds up nothing of the other subscriptions: the worker does not wait for that row to write
//! what it decided about the subscription (disabled, its owner's access, its health), it writes
//! it later. One scenario per test.

mod support;

use support::bob::bob_reads_ledger;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{exec, subscribe, WAIT};

#[test]
fn a_pause_left_open_while_its_owner_loses_access_holds_up_no_other_subscription() {
    // bob paused his subscription in a transaction he left open, then lost SELECT on its
    // table: each claim went to disable it, waited for his row, failed on lock_timeout and
    // began again, so no claim got through and alice's event waited as long as bob's
    // transaction stayed open.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    exec(&mut su, "CREATE TABLE orders (id int PRIMARY KEY)");
    subscribe(&mut su, "alices", "orders", &rx.url("/alice"), "");
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", &rx.url("/bob"), "");
    exec(&mut bob, "BEGIN; SELECT webhook.pause('bobs')");
    exec(&mut su, "REVOKE SELECT ON ledger FROM bob");
    exec(&mut su, "INSERT INTO orders VALUES (1)");
    wait_until(WAIT, "alice's event", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/alice"))
    });
    exec(&mut bob, "ROLLBACK");
}
