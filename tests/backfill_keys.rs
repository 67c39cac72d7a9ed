//! A backfill keeps its place between chunks by the last primary key it read, kept as text:
//! every row must be read once whatever the key's type and the settings of the database the
//! worker reads it in. A key read back as another value skipped rows and still ended `done`.

mod support;

use postgres::Client;
use support::backfill::wait_state;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{count, exec, subscribe};

/// Subscribes table `t` (made with its rows by `make`), backfills it to its end and returns
/// how many distinct rows it sent, by `id`.
fn backfilled_rows(db: &mut Client, make: &str) -> i64 {
    let rx = Receiver::start();
    exec(db, make);
    let (id, _) = subscribe(db, "s", "t", &rx.url("/s"), "");
    exec(db, "SELECT webhook.backfill('s')");
    wait_state(db, "s", "done");
    count(
        db,
        &format!(
            "SELECT count(DISTINCT record ->> 'id') FROM webhook.events
              WHERE subscription_id = {id} AND op = 'BACKFILL'"
        ),
    )
}

#[test]
fn a_timestamptz_key_keeps_its_place_whatever_the_databases_datestyle() {
    // Written as 'Thu Jan 01 20:00:00 2026 IST', India's time read back as Israel's moved the
    // next chunk 3.5 hours on: 990 of 1,200 rows.
    let pg = Cluster::start(&["datestyle = 'Postgres, MDY'", "timezone = 'Asia/Kolkata'"]);
    let mut db = pg.client_with_extension();
    let sent = backfilled_rows(
        &mut db,
        "CREATE TABLE t (k timestamptz PRIMARY KEY, id int);
         INSERT INTO t SELECT '2026-01-01 00:00+05:30'::timestamptz + g * interval '1 min', g
           FROM generate_series(1, 1200) g;",
    );
    assert_eq!(sent, 1200);
}
