//! A backfill keeps its place between chunks by the last primary key it read, kept as text:
//! every row must be read once whatever the key's type and the settings of the database the
//! worker reads it in. A key read back as another value skipped rows and still ended `done`.

mod support;

use support::backfill::wait_state;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{count, exec, subscribe};

/// In a new cluster with `settings`: subscribes table `t` (made with its rows by `make`),
/// backfills it to its end and returns how many distinct rows it sent, by `id`.
fn backfilled_rows(settings: &[&str], make: &str) -> i64 {
    let pg = Cluster::start(settings);
    let db = &mut pg.client_with_extension();
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
    let sent = backfilled_rows(
        &["datestyle = 'Postgres, MDY'", "timezone = 'Asia/Kolkata'"],
        "CREATE TABLE t (k timestamptz PRIMARY KEY, id int);
         INSERT INTO t SELECT '2026-01-01 00:00+05:30'::timestamptz + g * interval '1 min', g
           FROM generate_series(1, 1200) g;",
    );
    assert_eq!(sent, 1200);
}

/// 1,400 rows whose citext keys order differently from their text: 'B00001', 'b00001x', …
const CITEXT_ROWS: &str =
    "INSERT INTO t SELECT chr(65 + g % 26) || lpad(g::text, 5, '0'), g FROM generate_series(1, 700) g;
     INSERT INTO t SELECT chr(97 + g % 26) || lpad(g::text, 5, '0') || 'x', 700 + g
       FROM generate_series(1, 700) g;";

#[test]
fn a_citext_key_is_compared_as_its_index_orders_it() {
    // Under the chunk's search_path (pg_catalog) a bare `>` between citexts was text's, through
    // the implicit cast, while the rows came in citext's order: 950 of 1,400 rows.
    let sent = backfilled_rows(
        &[],
        &format!(
            "CREATE EXTENSION citext;
             CREATE TABLE t (k citext COLLATE \"C\" PRIMARY KEY, id int);
             {CITEXT_ROWS}"
        ),
    );
    assert_eq!(sent, 1400);
}

#[test]
fn a_key_of_columns_whose_operators_live_in_different_schemas_is_compared_column_by_column() {
    // (citext, int): citext's operators are in public, int's in pg_catalog, so no one row
    // comparison names both.
    let sent = backfilled_rows(
        &[],
        &format!(
            "CREATE EXTENSION citext;
             CREATE TABLE t (k citext COLLATE \"C\", id int, PRIMARY KEY (k, id));
             {CITEXT_ROWS}
             INSERT INTO t SELECT 'same', 2000 + g FROM generate_series(1, 600) g;"
        ),
    );
    assert_eq!(sent, 2000);
}
