//! Per-key order (`order_key`) across changes to the types of key columns' values and to how
//! they hash: an attribute taken by a cascade, a type's owner who may not hold off the keyed
//! table's writers, values keyed by their output text under other session settings, and a
//! type whose extension gains an extended hash function. One scenario per test.

mod support;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::keyed::{paused_with_an_event, refusing_seq_1_twice, seqs, RETRY_SOON};
use support::receiver::Receiver;
use support::{error_of, exec, subscribe, WAIT};

/// With `made` first, table acct keyed by its column k of type `k_type` has an event queued:
/// `cascade` is refused, naming k.
fn cascade_is_refused(made: &str, k_type: &str, cascade: &str) {
    let pg = Cluster::start(&[]);
    let mut db = paused_with_an_event(&pg, made, &format!("k {k_type}"), "'k'");
    let e = error_of(&mut db, cascade);
    assert!(
        e.contains("cannot alter the type of column \"k\" of table"),
        "{e}"
    );
}

#[test]
fn a_cascade_that_drops_an_attribute_of_a_key_columns_composite_type_is_refused_while_events_are_queued(
) {
    // ALTER TYPE comp DROP ATTRIBUTE b was refused, but DROP DOMAIN d1 CASCADE took the same
    // attribute, and the next UPDATE of the row hashed another key than its INSERT.
    cascade_is_refused(
        "CREATE DOMAIN d1 AS int; CREATE TYPE comp AS (a int, b d1)",
        "comp",
        "DROP DOMAIN d1 CASCADE",
    );
}

#[test]
fn a_cascade_that_drops_a_column_of_a_table_whose_row_type_keys_events_is_refused_while_events_are_queued(
) {
    // ALTER TABLE addr DROP COLUMN m was refused; DROP TYPE mood CASCADE dropped it.
    cascade_is_refused(
        "CREATE TYPE mood AS ENUM ('calm'); CREATE TABLE addr (city text, m mood)",
        "addr",
        "DROP TYPE mood CASCADE",
    );
}

/// carol, who owns type ctype (a int), and alice, who owns table t (id, k ctype): a superuser's
/// session.
fn carols_type_in_alices_table(pg: &Cluster) -> Client {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE ROLE carol LOGIN; CREATE ROLE alice LOGIN;
         GRANT CREATE ON SCHEMA public TO carol;
         CREATE TYPE ctype AS (a int);
         CREATE TABLE t (id int PRIMARY KEY, k ctype); ALTER TABLE t OWNER TO alice",
    );
    db
}

#[test]
fn a_key_whose_values_are_of_a_type_owned_by_a_role_that_may_not_lock_the_table_is_refused() {
    // Keyed by carol's type, a subscription on alice's table held every change carol made to
    // her type: refused while it had events queued, or since carol may not hold alice's writers
    // off, always. A webhook_admin member could so stop any role from altering its tables.
    let pg = Cluster::start(&[]);
    let mut db = carols_type_in_alices_table(&pg);
    exec(&mut db, "ALTER TYPE ctype OWNER TO carol");
    let e = error_of(
        &mut db,
        "SELECT webhook.subscribe('t', 't', 'http://127.0.0.1:9/t', order_key => ARRAY['k'])",
    );
    assert!(
        e.contains("order_key column \"k\" of public.t holds values of type public.ctype, whose owner, role carol, may not lock public.t"),
        "{e}"
    );
}

#[test]
fn a_types_owner_may_not_hold_off_the_writers_of_a_table_keyed_by_values_of_it() {
    // carol altered her type, which alice's table keys its events by, in a transaction she
    // kept open: pg_webhook's SHARE lock on alice's table, taken for her, held up alice's
    // writers, though carol has no right on that table. (The type was the superuser's when
    // the subscription was made.)
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = carols_type_in_alices_table(&pg);
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", order_key => ARRAY['k']",
    );
    exec(&mut db, "ALTER TYPE ctype OWNER TO carol");
    let mut carol = pg.connect_as("postgres", "carol");
    let e = error_of(&mut carol, "BEGIN; ALTER TYPE ctype ADD ATTRIBUTE b int");
    assert!(
        e.contains("only a role that may LOCK TABLE public.t IN SHARE MODE")
            && !e.contains("queued"),
        "{e}"
    );
    exec(&mut carol, "ROLLBACK");
    // A role that may lock the table makes the same change (nothing is queued).
    exec(&mut db, "ALTER TYPE ctype ADD ATTRIBUTE b int");
}

/// Table `evs` (id, e `column_type`, seq) keyed by e, its subscription paused, with `before`
/// run first (types, extensions): a receiver that refuses the event of seq 1 twice.
fn paused_keyed_table(pg: &Cluster, before: &str, column_type: &str) -> (Client, Receiver) {
    let rx = refusing_seq_1_twice();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!("{before}; CREATE TABLE evs (id int PRIMARY KEY, e {column_type}, seq int)"),
    );
    subscribe(
        &mut db,
        "evs",
        "evs",
        &rx.url("/evs"),
        &format!(", order_key => ARRAY['e']{RETRY_SOON}"),
    );
    exec(&mut db, "SELECT webhook.pause('evs')");
    (db, rx)
}

/// Resumes `evs` and waits for `n` events: the `seq` of each, in the order they were accepted.
fn resumed(db: &mut Client, rx: &Receiver, n: usize) -> Vec<i64> {
    exec(db, "SELECT webhook.resume('evs')");
    wait_until(WAIT, "every event", || rx.accepted().len() == n);
    seqs(rx)
}

#[test]
fn a_key_hashed_by_its_output_text_is_one_key_in_sessions_with_other_time_zones_and_date_styles() {
    // json has no hash function, so a composite holding one is keyed by its output text, which
    // showed the instant in the writer's time zone: the UPDATE went while its INSERT, written
    // from a session in UTC, was retried.
    let pg = Cluster::start(&[]);
    let (mut db, rx) =
        paused_keyed_table(&pg, "CREATE TYPE ev AS (at timestamptz, meta json)", "ev");
    exec(
        &mut db,
        "SET TimeZone = 'UTC';
         INSERT INTO evs VALUES (1, ROW('2026-01-01 09:00:00+00', '{}'), 1);
         SET TimeZone = 'America/New_York'; SET DateStyle = 'German';
         UPDATE evs SET seq = 2 WHERE id = 1",
    );
    assert_eq!(
        resumed(&mut db, &rx, 2),
        vec![1, 2],
        "the UPDATE went while its INSERT was retried"
    );
}

#[test]
fn a_citext_key_is_one_key_for_equal_values_and_across_the_update_that_adds_its_extended_hash() {
    // citext 1.5 has a hash function but no extended one (1.6 adds it): its values were keyed
    // by their text, so 'Acme' and 'ACME', equal as citext, were two keys; and after ALTER
    // EXTENSION citext UPDATE a new session hashed 'acme' another way than an old one.
    let pg = Cluster::start(&[]);
    let (mut db, rx) = paused_keyed_table(&pg, "CREATE EXTENSION citext VERSION '1.5'", "citext");
    exec(
        &mut db,
        "INSERT INTO evs VALUES (1, 'Acme', 1), (2, 'ACME', 2)",
    );
    exec(&mut db, "ALTER EXTENSION citext UPDATE TO '1.6'");
    let mut later = pg.connect("postgres");
    exec(&mut later, "INSERT INTO evs VALUES (3, 'acme', 3)");
    exec(&mut db, "INSERT INTO evs VALUES (4, 'aCmE', 4)");
    assert_eq!(
        resumed(&mut db, &rx, 4),
        vec![1, 2, 3, 4],
        "events of one key went out of order"
    );
}
