//! PostgreSQL's predefined roles that read or write every table whatever its privileges say
//! (pg_read_all_data, pg_write_all_data): pg_webhook's private tables hold the subscriptions'
//! secrets, receivers' answers, rows of tables such a role may not read, and the owner whose
//! rights a subscription runs with. One scenario per test; each fails on a pg_webhook whose
//! private tables let them in.

mod support;

use postgres::Client;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, WAIT};

/// The extension's tables, by the catalog (a table added later is covered too).
const PRIVATE_TABLES: &str = "SELECT c.oid::regclass::text, c.relrowsecurity
       FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
      WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
        AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_webhook')
        AND c.relkind IN ('r', 'p')
      ORDER BY 1";

#[test]
fn pg_read_all_data_reads_no_row_of_pg_webhooks_tables() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE payroll (id int PRIMARY KEY, salary int);
         CREATE ROLE reader LOGIN; GRANT pg_read_all_data TO reader;",
    );
    subscribe(&mut su, "payroll_hook", "payroll", &rx.url("/p"), "");
    exec(&mut su, "INSERT INTO payroll VALUES (1, 100000)");
    rx.wait_for(1, WAIT);
    support::cluster::wait_until(WAIT, "the event to be archived", || {
        count(&mut su, "SELECT count(*) FROM webhook._event_archive") == 1
    });
    let tables = su.query(PRIVATE_TABLES, &[]).unwrap();
    assert!(tables.len() >= 10, "{} tables", tables.len());
    let mut reader = pg.connect_as("postgres", "reader");
    for row in &tables {
        let table: String = row.get(0);
        assert!(row.get::<_, bool>(1), "{table} has no row-level security");
        let sql = format!("SELECT count(*) FROM {table}");
        assert_eq!(count(&mut reader, &sql), 0, "{table} shows rows to reader");
    }
    // The rows are there, for the tables' owner.
    for table in ["webhook._subscriptions", "webhook._event_archive"] {
        let sql = format!("SELECT count(*) FROM {table}");
        assert_eq!(count(&mut su, &sql), 1, "{table}");
    }
}

#[test]
fn pg_write_all_data_changes_no_subscription_and_no_queued_event() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE orders (id int PRIMARY KEY);
         CREATE ROLE writer LOGIN; GRANT pg_write_all_data TO writer;",
    );
    subscribe(&mut su, "orders_hook", "orders", &rx.url("/o"), "");
    exec(
        &mut su,
        "SELECT webhook.pause('orders_hook'); INSERT INTO orders VALUES (1);",
    );
    let mut writer = pg.connect_as("postgres", "writer");
    // Taking the subscription over (its owner decides whose rights its SQL runs with) or
    // sending its rows elsewhere.
    let changed = writer
        .execute(
            "UPDATE webhook._subscriptions
                SET owner = 'writer'::regrole, url = 'http://127.0.0.1:9/stolen'",
            &[],
        )
        .unwrap();
    assert_eq!(changed, 0, "subscriptions changed");
    let deleted = writer
        .execute("DELETE FROM webhook._event_queue", &[])
        .unwrap();
    assert_eq!(deleted, 0, "queued events deleted");
    let e = error_of(
        &mut writer,
        "INSERT INTO webhook._triggers_made VALUES (12345)",
    );
    assert!(e.contains("row-level security"), "{e}");
    // The event is still queued, and goes where it was meant to.
    exec(&mut su, "SELECT webhook.resume('orders_hook')");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].path, "/o");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM webhook._subscriptions
              WHERE owner = 'writer'::regrole OR url LIKE '%stolen%'"
        ),
        0
    );
}

#[test]
fn a_dump_by_pg_read_all_data_needs_bypassrls() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE items (id int PRIMARY KEY);
         CREATE ROLE backup LOGIN; GRANT pg_read_all_data TO backup;",
    );
    subscribe(&mut su, "items_hook", "items", &rx.url("/i"), "");
    let e = pg
        .tool_as("backup", "pg_dump", &["-d", "postgres"])
        .expect_err("pg_dump without BYPASSRLS");
    assert!(e.contains("row-level security"), "{e}");
    exec(&mut su, "ALTER ROLE backup BYPASSRLS");
    let dump = pg
        .tool_as("backup", "pg_dump", &["-d", "postgres"])
        .unwrap_or_else(|e| panic!("pg_dump with BYPASSRLS: {e}"));
    assert!(dump.contains("items_hook"), "the dump has the subscription");
}

#[test]
fn pg_read_all_data_finds_no_secret_in_the_subscriptions_toast_table() {
    // Row-level security guards a table, not its TOAST table, which pg_read_all_data reads:
    // large headers (a client key, an auth value) were stored there, chunk by chunk.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE vault (id int PRIMARY KEY);
         CREATE ROLE reader LOGIN; GRANT pg_read_all_data TO reader;",
    );
    // 6 kB of hex, which compresses to well over the 2 kB past which a value may go out of line.
    let token: String = su
        .query_one(
            "SELECT string_agg(md5(g::text), '') FROM generate_series(1, 190) g",
            &[],
        )
        .unwrap()
        .get(0);
    subscribe(
        &mut su,
        "vault_hook",
        "vault",
        &rx.url("/v"),
        &format!(", headers => '{{\"x-token\": \"{token}\"}}'"),
    );
    let mut reader = pg.connect_as("postgres", "reader");
    assert_no_chunk_in_toast_table(&mut su, &mut reader, "webhook._subscriptions");
    // The headers are whole, in the row.
    let kept: String = su
        .query_one(
            "SELECT headers->>'x-token' FROM webhook._subscriptions WHERE name = 'vault_hook'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, token);
    // So for every column that could go out of line, later ones too.
    assert_no_column_out_of_line(&mut su, "webhook._subscriptions");
}

#[test]
fn pg_read_all_data_finds_no_backfill_filter_in_a_toast_table() {
    // A backfill's filter is its owner's SQL, literals and all; its last key is a row's primary
    // key. Row-level security guards webhook._backfills, not its TOAST table.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE accounts (id int PRIMARY KEY, note text);
         INSERT INTO accounts VALUES (1, 'a');
         CREATE ROLE reader LOGIN; GRANT pg_read_all_data TO reader;",
    );
    subscribe(&mut su, "accounts_hook", "accounts", &rx.url("/a"), "");
    // 6 kB of hex, which compresses to well over the 2 kB past which a value may go out of line.
    exec(
        &mut su,
        "SELECT webhook.backfill('accounts_hook', format('note <> %L',
             (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 190) g)))",
    );
    rx.wait_for(1, WAIT);
    let mut reader = pg.connect_as("postgres", "reader");
    assert_no_chunk_in_toast_table(&mut su, &mut reader, "webhook._backfills");
    let kept = count(
        &mut su,
        "SELECT count(*) FROM webhook._backfills WHERE length(filter) > 6000",
    );
    assert_eq!(kept, 1, "the filter is whole, in the row");
    assert_no_column_out_of_line(&mut su, "webhook._backfills");
}

/// `reader` (a member of pg_read_all_data) finds no chunk in `table`'s TOAST table.
fn assert_no_chunk_in_toast_table(su: &mut Client, reader: &mut Client, table: &str) {
    let toast: String = su
        .query_one(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = $1::text::regclass",
            &[&table],
        )
        .unwrap()
        .get(0);
    let sql = format!("SELECT count(*) FROM {toast}");
    assert_eq!(
        count(reader, &sql),
        0,
        "chunks in {toast}, the TOAST table of {table}"
    );
}

/// No column of `table` may go out of line before its row would not fit a page.
fn assert_no_column_out_of_line(su: &mut Client, table: &str) {
    let out_of_line = su
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::text::regclass
                AND attnum > 0 AND NOT attisdropped AND attstorage IN ('x', 'e')",
            &[&table],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(out_of_line, 0, "columns of {table} stored out of line");
}
