//! Row triggers on the queue fire for the events capture writes, as for a nested INSERT.
//! Capture writes the queue directly (as COPY does, without the executor) and fired none:
//! pg_repack, which logs the rows written to a table while it copies it with a row trigger,
//! lost every event written during its copy (a review counted 112 of 220) at its swap.

mod support;

use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{count, exec, subscribe};

/// A paused subscription on `t`: its events stay in the queue, where the tests look at them.
fn paused_subscription(pg: &Cluster, rx: &Receiver) -> postgres::Client {
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "SELECT webhook.pause('t')");
    db
}

#[test]
fn an_after_row_trigger_on_the_queue_sees_every_event_capture_writes() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = paused_subscription(&pg, &rx);
    exec(
        &mut db,
        "CREATE TABLE seen (id bigint, txid xid8, record jsonb);
         CREATE FUNCTION log_event() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO seen VALUES (NEW.id, NEW.txid, NEW.record); RETURN NULL; END $$;
         CREATE TRIGGER log AFTER INSERT ON webhook._event_queue
           FOR EACH ROW EXECUTE FUNCTION log_event();",
    );
    // One row, then a batch bigger than one heap_multi_insert (1,000 rows).
    exec(&mut db, "INSERT INTO t VALUES (0)");
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 2500)");
    assert_eq!(count(&mut db, "SELECT count(*) FROM seen"), 2501);
    let unseen = count(
        &mut db,
        "SELECT count(*) FROM webhook._event_queue q
          WHERE NOT EXISTS (SELECT FROM seen s
                             WHERE (s.txid, s.id) = (q.txid, q.id) AND s.record = q.record)",
    );
    assert_eq!(unseen, 0);
}

#[test]
fn a_before_row_trigger_on_the_queue_may_change_or_keep_out_an_event() {
    // A superuser's trigger, like any BEFORE trigger on a table: what it returns is written.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = paused_subscription(&pg, &rx);
    exec(
        &mut db,
        "CREATE FUNCTION vet() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN
                IF NEW.record->>'id' = '2' THEN RETURN NULL; END IF;
                NEW.last_error := 'vetted';
                NEW.next_attempt_at := now() + interval '1 hour';
                RETURN NEW;
              END $$;
         CREATE TRIGGER vet BEFORE INSERT ON webhook._event_queue
           FOR EACH ROW EXECUTE FUNCTION vet();
         INSERT INTO t VALUES (1), (2), (3);",
    );
    let rows: Vec<(i32, Option<String>)> = db
        .query(
            "SELECT (record->>'id')::int, last_error FROM webhook._event_queue ORDER BY 1",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let vetted = Some("vetted".to_string());
    assert_eq!(rows, vec![(1, vetted.clone()), (3, vetted)]);
    // A due time puts the rows in the index of scheduled events, which capture's rows are
    // otherwise never in: found through it, they are there.
    exec(
        &mut db,
        "SET enable_seqscan = off; SET enable_bitmapscan = off",
    );
    let scheduled = count(
        &mut db,
        "SELECT count(*) FROM webhook._event_queue WHERE next_attempt_at IS NOT NULL",
    );
    assert_eq!(scheduled, 2);
}

#[test]
fn pg_repack_of_the_queue_loses_no_event_written_while_it_runs() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = paused_subscription(&pg, &rx);
    exec(&mut db, "CREATE EXTENSION pg_repack");
    // A backlog that takes pg_repack a while to copy.
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 200000)");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = pg.connect("postgres");
        std::thread::spawn(move || {
            let mut next = 200_001;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                w.execute("INSERT INTO t VALUES ($1)", &[&next])
                    .unwrap_or_else(|e| panic!("insert {next}: {e}"));
                next += 1;
            }
            next - 200_001
        })
    };
    pg.tool(
        "pg_repack",
        &["-d", "postgres", "-t", "webhook._event_queue"],
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().expect("the writer thread");
    assert!(written > 0, "no row was written while pg_repack ran");
    let missing = count(
        &mut db,
        "SELECT count(*) FROM t
          WHERE NOT EXISTS (SELECT FROM webhook._event_queue q
                             WHERE (q.record->>'id')::int = t.id)",
    );
    assert_eq!(missing, 0, "of {written} rows written while pg_repack ran");
}

#[test]
fn a_backfill_fires_the_queues_row_triggers_too() {
    // The backfill writes its events from the worker, outside any statement on the queue.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         INSERT INTO t SELECT generate_series(1, 1500);
         CREATE TABLE seen (id bigint);
         CREATE FUNCTION log_event() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.seen VALUES (NEW.id); RETURN NULL; END $$;
         CREATE TRIGGER log AFTER INSERT ON webhook._event_queue
           FOR EACH ROW EXECUTE FUNCTION log_event();",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "SELECT webhook.backfill('t')");
    support::backfill::wait_state(&mut db, "t", "done");
    assert_eq!(count(&mut db, "SELECT count(*) FROM seen"), 1500);
    assert_eq!(rx.wait_for(1500, support::WAIT).len(), 1500);
}
