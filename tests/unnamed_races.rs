//! What a filter runs cannot change between its check and its run. The writer's planning is
//! held up on an index lock (tabowner's REINDEX of a table the filter reads), while tabowner
//! changes what the checked filter would run: the change must wait for the write, or what it
//! brings in must be refused, never run as the subscriber.

mod support;

use postgres::Client;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::unnamed::*;
use support::{error_of, exec, subscribe, WAIT};

/// tabowner's m.lookup (id int PRIMARY KEY, v int), readable by sub, with statistics.
const LOOKUP: &str = "CREATE TABLE m.lookup (id int PRIMARY KEY, v int);
     GRANT SELECT ON m.lookup TO sub;
     INSERT INTO m.lookup SELECT g, g % 5 FROM generate_series(1, 1000) g;
     ANALYZE m.lookup;";

/// With `prepare` made by tabowner, subscribes sub to m.t's inserts with `filter` (which reads
/// m.lookup, so its planning locks m.lookup's index); holds that index in a REINDEX; starts
/// writer's INSERT of row 1, waits until it waits for the lock, runs `change` in another
/// tabowner session, lets the REINDEX go and returns the write's outcome (with the receiver
/// and the cluster, still running).
fn write_held_in_planning(
    prepare: &str,
    filter: &str,
    change: impl FnOnce(&mut Client),
) -> (Result<(), String>, Receiver, Cluster) {
    let (pg, mut su, mut owner) = setup();
    exec(&mut owner, &format!("{LOOKUP} {prepare}"));
    exec(&mut su, "ANALYZE m.lookup");
    let rx = Receiver::start();
    subscribe(
        &mut pg.connect_as("postgres", "sub"),
        "s",
        "m.t",
        &rx.url("/s"),
        &format!(
            ", events => '{{insert}}', filter => '{}'",
            filter.replace('\'', "''")
        ),
    );
    exec(&mut owner, "BEGIN; REINDEX INDEX m.lookup_pkey");
    let mut writer = writer(&pg);
    let writing = std::thread::spawn(move || {
        writer
            .batch_execute("INSERT INTO m.t (id, mood) VALUES (1, 'ok')")
            .map_err(|e| support::describe(&e))
    });
    wait_for_lock(&pg);
    change(&mut pg.connect_as("postgres", "tabowner"));
    exec(&mut owner, "COMMIT");
    let outcome = writing.join().expect("the writing thread panicked");
    (outcome, rx, pg)
}

/// Waits until the INSERT into m.t waits for a lock.
fn wait_for_lock(pg: &Cluster) {
    let mut watcher = pg.connect_as("postgres", "postgres");
    let deadline = std::time::Instant::now() + WAIT;
    while support::count(
        &mut watcher,
        "SELECT count(*) FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO m.t%'",
    ) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_composite_a_write_reads_into_cannot_change_between_the_check_and_the_run() {
    // The check read m.c2's columns; ALTER TYPE … ADD ATTRIBUTE of a column of tabowner's
    // domain must wait for the write, not slip in before the run reads the columns again.
    let (outcome, rx, _pg) = write_held_in_planning(
        "CREATE FUNCTION m.loud_check(int) RETURNS boolean LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'tabowner''s check ran as %', current_user; END $$;
         CREATE DOMAIN m.d AS int CHECK (m.loud_check(VALUE));
         CREATE TYPE m.c2 AS (a int); ALTER TABLE m.t ADD COLUMN doc jsonb;",
        "EXISTS (SELECT FROM m.lookup l WHERE l.id = NEW.id)
             OR (pg_catalog.jsonb_populate_record(NULL::m.c2, NEW.doc)).a IS NULL",
        |other| {
            let error = error_of(
                other,
                "SET lock_timeout = '200ms'; ALTER TYPE m.c2 ADD ATTRIBUTE z m.d",
            );
            assert!(error.contains("lock timeout"), "{error}");
        },
    );
    outcome.expect("the write");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
}

#[test]
fn a_commutator_defined_between_the_check_and_the_planning_is_refused() {
    // m.<<< runs int4lt; the planner estimates `3 <<< v` with its commutator's function,
    // which tabowner defines while the write waits to be planned.
    let (outcome, _rx, _pg) = write_held_in_planning(
        "CREATE FUNCTION m.evil_gt(int, int) RETURNS boolean LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'evil_gt ran as %', current_user; END $$;
         GRANT EXECUTE ON FUNCTION m.evil_gt(int, int) TO sub;
         CREATE OPERATOR m.<<< (LEFTARG = int, RIGHTARG = int, FUNCTION = int4lt,
             RESTRICT = scalarltsel);",
        "EXISTS (SELECT FROM m.lookup l WHERE 3 OPERATOR(m.<<<) l.v)",
        |other| {
            exec(
                other,
                "CREATE OPERATOR m.>>> (LEFTARG = int, RIGHTARG = int, FUNCTION = m.evil_gt,
                     COMMUTATOR = OPERATOR(m.<<<))",
            )
        },
    );
    let error = outcome.expect_err("the write ran the new commutator");
    assert!(
        error.contains("would run function m.evil_gt(integer,integer), owned by role tabowner, with the rights of role sub as PostgreSQL plans or runs the expression")
            && !error.contains("ran as"),
        "{error}"
    );
}

/// tabowner's range type m.r, whose subtype_diff m.loud_diff fails when it runs as sub, and
/// table m.v of such ranges, with statistics; sub's helper s.booked(id), whose planning
/// estimates a range condition on m.v (calling the subtype_diff); and sub's subscription to
/// m.t's inserts filtered by it, with its receiver.
fn range_with_loud_diff(pg: &Cluster, su: &mut Client, owner: &mut Client) -> Receiver {
    exec(
        owner,
        "CREATE FUNCTION m.loud_diff(int, int) RETURNS float8 LANGUAGE sql IMMUTABLE
             AS $$ SELECT CASE WHEN current_user::text = 'sub'
                               THEN ('tabowner''s function ran as ' || current_user)::float8
                               ELSE ($1 - $2)::float8 END $$;
         CREATE TYPE m.r AS RANGE (subtype = int, subtype_diff = m.loud_diff);
         CREATE TABLE m.v (id int, r m.r);
         INSERT INTO m.v SELECT g, m.r(g, g + 10) FROM generate_series(1, 500) g;
         ANALYZE m.v;
         GRANT SELECT ON m.v TO sub;",
    );
    exec(su, "CREATE SCHEMA s AUTHORIZATION sub");
    exec(
        &mut pg.connect_as("postgres", "sub"),
        "CREATE FUNCTION s.booked(int) RETURNS boolean LANGUAGE sql STABLE AS $$
             SELECT NOT EXISTS (SELECT FROM m.v o WHERE o.r && m.r(100, 120) AND o.id = $1) $$",
    );
    let rx = Receiver::start();
    subscribe_sub(
        pg,
        &rx,
        ", events => '{insert}', filter => 's.booked(NEW.id)'",
    );
    rx
}

/// Loads m.r's subtype_diff in `writer`'s session (where no guard watches), then has it write
/// a row sub's filter checks, and asserts that the subtype_diff was refused, not run as sub.
fn assert_loaded_subtype_diff_refused(writer: &mut Client) {
    let error = error_of(
        writer,
        "SELECT m.r(1, 2); INSERT INTO m.t VALUES (20, 'ok')",
    );
    assert_refused(
        &error,
        "m.loud_diff(integer,integer)",
        "as PostgreSQL plans or runs the expression",
    );
}

#[test]
fn a_subtype_diff_the_writer_loaded_beforehand_is_still_refused() {
    // The type cache keeps a range type's subtype_diff for the backend's life once loaded —
    // here by the writer, where no guard watches — and the planner calls it from there when
    // it estimates a range condition in sub's helper.
    let (pg, mut su, mut owner) = setup();
    let _rx = range_with_loud_diff(&pg, &mut su, &mut owner);
    assert_loaded_subtype_diff_refused(&mut writer(&pg));
}

#[test]
fn a_subtype_diff_made_after_the_writer_read_the_range_types_is_still_refused() {
    // The writer's session reads which functions are subtype_diffs at its first function not
    // built in; a range type made after that must reach it (pg_range's invalidation), or its
    // subtype_diff would go unwatched in this session for good.
    let (pg, mut su, mut owner) = setup();
    exec(
        &mut owner,
        "CREATE FUNCTION m.noop() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
    );
    let mut writer = writer(&pg);
    exec(&mut writer, "SELECT m.noop()");
    let _rx = range_with_loud_diff(&pg, &mut su, &mut owner);
    assert_loaded_subtype_diff_refused(&mut writer);
}
