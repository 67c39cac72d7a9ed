//! Callbacks, per subscription: run after each success and each death as the subscription's
//! owner, with the receiver's answer; a failing, slow or loud one is rolled back, written on
//! its event in part, and holds nothing up.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::subscribe;

/// Callbacks, one of which runs until its timeout, take longer than most.
const WAIT: Duration = support::LONG_WAIT;

/// A cluster with `settings`, and table `t` (made by `ddl`, with anything the callback needs)
/// subscribed to a receiver that accepts everything, with `callback` called back.
fn called_back(
    settings: &[&str],
    ddl: &str,
    callback: &str,
) -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(settings);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    support::exec(&mut db, ddl);
    let options = format!(", callback => '{callback}'");
    subscribe(&mut db, "t", "t", &rx.url("/t"), &options);
    (pg, rx, db)
}

/// Callbacks run after each success and each death, as the subscription's owner, with the
/// outcome; a failing or slow one is rolled back, written on its event, and holds nothing up.
#[test]
fn callbacks_act_on_the_receivers_answer_as_the_owner() {
    // Long enough for a plpgsql callback on a loaded CI machine, short enough to wait out.
    let pg = Cluster::start(&["pg_webhook.callback_timeout = '2s'"]);
    let mut admin = pg.client_with_extension();
    admin
        .batch_execute(
            "CREATE ROLE app LOGIN; GRANT webhook_admin TO app; GRANT CREATE ON SCHEMA public TO app;
             CREATE TABLE orders (id int PRIMARY KEY, receipt text, notified_by text);
             CREATE TABLE dead_letters (event_id bigint, status_code int, body text, attempts int);
             CREATE TABLE audit (id int);
             ALTER TABLE orders OWNER TO app; ALTER TABLE dead_letters OWNER TO app;
             ALTER TABLE audit OWNER TO app;",
        )
        .unwrap();
    let mut db = pg.connect_as("postgres", "app");
    db.batch_execute(
        r#"
        CREATE FUNCTION public.on_result(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            IF event->>'status' = 'delivered' THEN
                UPDATE public.orders
                   SET receipt = event->'response_headers'->>'x-receipt', notified_by = current_user
                 WHERE id = (event->'record'->>'id')::int;
            ELSE
                INSERT INTO public.dead_letters
                VALUES ((event->>'event_id')::bigint, (event->>'status_code')::int,
                        event->>'response_body', (event->>'attempts')::int);
            END IF;
        END $$;
        CREATE FUNCTION public.broken(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO public.audit VALUES ((event->'record'->>'id')::int);
            IF (event->'record'->>'id')::int = 10 THEN
                PERFORM pg_catalog.pg_sleep(60);
            END IF;
            RAISE EXCEPTION 'no ticket system today';
        END $$;
        "#,
    )
    .unwrap();
    let rx = Receiver::with(|req, _| {
        let id = req.json()["record"]["id"].as_i64().unwrap_or(0);
        if id == 2 {
            Reply::Full {
                status: 500,
                headers: vec![],
                body: "out of stock".into(),
            }
        } else {
            Reply::Full {
                status: 200,
                headers: vec![("x-receipt".into(), format!("r-{id}"))],
                body: "ok".into(),
            }
        }
    });
    subscribe(
        &mut db,
        "orders",
        "orders",
        &rx.url("/orders"),
        ", events => ARRAY['insert'], max_attempts => 1, callback => 'public.on_result(jsonb)'",
    );
    subscribe(
        &mut db,
        "audited",
        "audit",
        &rx.url("/audit"),
        ", callback => 'public.broken'::regproc::regprocedure",
    );
    db.batch_execute(
        "INSERT INTO orders (id) VALUES (1), (2), (3);
         INSERT INTO audit VALUES (10), (11)",
    )
    .unwrap();
    // One statement, one snapshot: read apart, the queue could look empty just before the
    // last event finished and queued its callback.
    wait_until(WAIT, "the callbacks to run", || {
        admin
            .query_one(
                "SELECT NOT EXISTS (SELECT FROM webhook._callback_queue)
                    AND (SELECT count(*) FROM webhook.events
                          WHERE status IN ('delivered', 'dead')) = 5",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    });
    let orders: Vec<(i32, Option<String>, Option<String>)> = db
        .query(
            "SELECT id, receipt, notified_by FROM orders ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        orders,
        vec![
            (1, Some("r-1".into()), Some("app".into())),
            (2, None, None),
            (3, Some("r-3".into()), Some("app".into())),
        ],
        "the success callback stored the receipt header, running as the owner; callback errors: {:?}\n{}",
        admin
            .query(
                "SELECT id, callback_error FROM webhook.events WHERE callback_error IS NOT NULL",
                &[]
            )
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>(),
        pg.log()
    );
    let dead: (i32, String, i32) = db
        .query_one("SELECT status_code, body, attempts FROM dead_letters", &[])
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(dead, (500, "out of stock".into(), 1));

    // The failing callback: rolled back, recorded on each event, logged.
    let audit: i64 = db
        .query_one("SELECT count(*) FROM audit", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        audit, 2,
        "only the two captured rows, none from the callback"
    );
    let errors: Vec<String> = db
        .query(
            "SELECT callback_error FROM webhook.events e JOIN webhook.subscriptions s
                 ON s.id = e.subscription_id
              WHERE s.name = 'audited' ORDER BY e.record->>'id'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect();
    assert!(
        errors[0].contains("statement timeout"),
        "{errors:?} {}",
        pg.log()
    );
    assert!(errors[1].contains("no ticket system today"), "{errors:?}");
    assert!(pg.log().contains("no ticket system today"));
    let clean: i64 = db
        .query_one(
            "SELECT count(*) FROM webhook.events WHERE callback_error IS NOT NULL
               AND subscription_id = (SELECT id FROM webhook.subscriptions WHERE name = 'orders')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(clean, 0);
}

#[test]
fn a_callbacks_huge_error_is_kept_and_logged_in_part() {
    // A callback raising a message of 20 MB had it written whole to its event and, as a
    // warning, to the server log: once per callback, as often as its owner liked.
    let (pg, _rx, mut db) = called_back(
        &["pg_webhook.poll_interval = '100ms'"],
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE FUNCTION public.loud(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             RAISE EXCEPTION 'loud %', pg_catalog.repeat('x', 20000000);
         END $$;",
        "public.loud(jsonb)",
    );
    support::exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(support::WAIT, "the callback's failure", || {
        support::count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE callback_error IS NOT NULL",
        ) == 1
    });
    let error =
        support::text(&mut db, "SELECT callback_error FROM webhook.events").unwrap_or_default();
    assert!(
        error.starts_with("loud xxx"),
        "{}",
        &error[..error.len().min(200)]
    );
    assert!(
        error.ends_with("bytes in all)"),
        "{}",
        &error[error.len().saturating_sub(200)..]
    );
    assert!(error.len() < 5000, "{} bytes kept", error.len());
    let log = pg.log();
    assert!(log.contains("loud xxx"), "the failure is logged");
    assert!(log.len() < 1_000_000, "the log holds {} bytes", log.len());
}

/// Retention purged finished events whose callbacks had yet to run, and the runner then found
/// no event and dropped the callback without a word: with `retention = 0` and a callback of
/// 0.1 s, most of 30 were never called.
#[test]
fn retention_keeps_an_event_until_its_callback_has_run() {
    let (_pg, _rx, mut db) = called_back(
        &["pg_webhook.retention = 0"],
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (id int);
         CREATE FUNCTION public.slow(e jsonb) RETURNS void LANGUAGE sql AS
             $$ SELECT pg_sleep(0.1); INSERT INTO public.called VALUES ((e->'record'->>'id')::int) $$",
        "public.slow(jsonb)",
    );
    support::exec(&mut db, "INSERT INTO t SELECT generate_series(1, 30)");
    wait_until(WAIT, "every callback", || {
        support::count(&mut db, "SELECT count(DISTINCT id) FROM called") == 30
    });
    // Called, their events go as retention says.
    wait_until(WAIT, "the events purged", || {
        support::count(&mut db, "SELECT count(*) FROM webhook.events") == 0
    });
    assert_eq!(
        support::count(&mut db, "SELECT count(*) FROM called"),
        30,
        "each once"
    );
}

/// The event reached the callback through serde_json's f64: 0.1234567890123456789 arrived
/// rounded, 12345678901234567890123 as 12345678901234568000000, 10.50 as 10.5, and 1e400 not
/// at all (the callback failed, "number out of range"). It is the stored jsonb now.
#[test]
fn a_callback_receives_the_rows_numbers_to_the_last_digit() {
    let (_pg, _rx, mut db) = called_back(
        &[],
        "CREATE TABLE t (id int PRIMARY KEY, n numeric);
         CREATE TABLE seen (id int, n text);
         CREATE FUNCTION public.note(e jsonb) RETURNS void LANGUAGE sql AS
             $$ INSERT INTO public.seen VALUES ((e->'record'->>'id')::int, e->'record'->>'n') $$",
        "public.note(jsonb)",
    );
    support::exec(
        &mut db,
        "INSERT INTO t VALUES (1, 0.1234567890123456789), (2, 1e400),
                              (3, 12345678901234567890123), (4, 10.50)",
    );
    wait_until(WAIT, "the callbacks", || {
        support::count(&mut db, "SELECT count(*) FROM seen") == 4
    });
    assert_eq!(
        support::count(
            &mut db,
            "SELECT count(*) FROM t JOIN seen USING (id) WHERE seen.n = t.n::text"
        ),
        4,
        "{:?}",
        support::text(
            &mut db,
            "SELECT string_agg(id || '=' || left(n, 40), ' ') FROM seen"
        )
    );
}

/// An event replayed before its callback ran is called back once, with the replay's outcome:
/// the callback queued for the first one runs with whatever outcome the event has when its
/// turn comes, and a replay still queued then gets its own call when it finishes.
#[test]
fn an_event_replayed_before_its_callback_ran_is_called_back_once_with_the_replays_outcome() {
    let (pg, _rx, mut db) = called_back(
        &["pg_webhook.callback_timeout = '60s'"],
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (id int, attempts int);
         CREATE FUNCTION public.note(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             IF (e->'record'->>'id')::int = 1 THEN
                 PERFORM pg_advisory_xact_lock(7);
             END IF;
             INSERT INTO public.called VALUES ((e->'record'->>'id')::int, (e->>'attempts')::int);
         END $$",
        "public.note(jsonb)",
    );
    // Row 1's callback waits for the lock this session holds; row 2's is queued behind it.
    let mut gate = pg.connect("postgres");
    support::exec(&mut gate, "SELECT pg_advisory_lock(7)");
    support::exec(&mut db, "INSERT INTO t VALUES (1)");
    support::exec(&mut db, "INSERT INTO t VALUES (2)");
    wait_until(WAIT, "row 1's callback waiting for the lock", || {
        support::count(
            &mut db,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        ) == 1
    });
    wait_until(WAIT, "row 2 delivered", || {
        support::count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE record->>'id' = '2' AND status = 'delivered'",
        ) == 1
    });
    support::exec(
        &mut db,
        "SELECT webhook.replay(id) FROM webhook.events WHERE record->>'id' = '2'",
    );
    wait_until(WAIT, "row 2 delivered again", || {
        support::count(
            &mut db,
            "SELECT count(*) FROM webhook.events
              WHERE record->>'id' = '2' AND status = 'delivered' AND attempts = 2",
        ) == 1
    });
    support::exec(&mut gate, "SELECT pg_advisory_unlock(7)");
    // Row 3's callback comes after row 2's (a subscription's go oldest first).
    support::exec(&mut db, "INSERT INTO t VALUES (3)");
    wait_until(WAIT, "row 3's callback", || {
        support::count(&mut db, "SELECT count(*) FROM called WHERE id = 3") == 1
    });
    let calls: Vec<(i32, i32)> = db
        .query("SELECT id, attempts FROM called ORDER BY id, attempts", &[])
        .unwrap_or_else(|e| panic!("reading the calls: {e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(calls, vec![(1, 1), (2, 2), (3, 1)]);
}

/// A callback receives the row images a worker reads (four times `max_payload_bytes`): those
/// of an event too large ever to send are left out. At 160 MiB, the most there was, escapes
/// and copies took the callback runner to gigabytes, for seconds past `callback_timeout`.
#[test]
fn a_callback_of_an_event_too_large_to_send_gets_it_without_its_images() {
    let (_pg, _rx, mut db) = called_back(
        &["pg_webhook.max_payload_bytes = '16kB'"],
        "CREATE TABLE t (id int PRIMARY KEY, body text);
         CREATE TABLE seen (id int, status text, omitted boolean, has_record boolean);
         CREATE FUNCTION public.note(e jsonb) RETURNS void LANGUAGE sql AS
             $$ INSERT INTO public.seen VALUES ((e->>'event_id')::int, e->>'status',
                    (e->>'images_omitted')::boolean, e->'record' <> 'null') $$",
        "public.note(jsonb)",
    );
    support::exec(
        &mut db,
        "INSERT INTO t VALUES (1, 'small'); INSERT INTO t VALUES (2, repeat('x', 100000))",
    );
    wait_until(WAIT, "both callbacks", || {
        support::count(&mut db, "SELECT count(*) FROM seen") == 2
    });
    let seen = support::text(
        &mut db,
        "SELECT string_agg(format('%s %s %s', status, omitted, has_record), ', ' ORDER BY id)
           FROM seen",
    );
    assert_eq!(seen.as_deref(), Some("delivered f t, dead t f"));
}
