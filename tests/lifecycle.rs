//! The extension across its lifetime: upgraded in place from the first release with live
//! subscriptions and queued events, and carried through pg_dump / pg_restore.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use postgres::Client;
use support::cluster::{extension_dir, install_released_script, wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{subscribe, text, WAIT};

/// Every object the extension owns, with its full definition, privileges and comment: two
/// databases with equal fingerprints have the same pg_webhook, whatever path led there.
const FINGERPRINT: &str = r#"
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pg_webhook'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
tables AS (SELECT objid AS oid FROM members WHERE classid = 'pg_class'::regclass)
SELECT pg_describe_object(m.classid, m.objid, 0) || ' | ' || COALESCE(CASE m.classid
         WHEN 'pg_proc'::regclass THEN
             (SELECT pg_get_functiondef(p.oid) || ' acl=' || COALESCE(p.proacl::text, '')
                FROM pg_proc p WHERE p.oid = m.objid)
         WHEN 'pg_class'::regclass THEN
             (SELECT c.relkind::text || ' options=' || COALESCE(c.reloptions::text, '')
                     || ' acl=' || COALESCE(c.relacl::text, '')
                     || ' view=' || COALESCE(CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END, '')
                     || ' columns=' || COALESCE((
                         SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                || COALESCE(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
                                || COALESCE(' -- ' || col_description(c.oid, a.attnum), ''),
                                ', ' ORDER BY a.attnum)
                           FROM pg_attribute a
                           LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                FROM pg_class c WHERE c.oid = m.objid)
       END, '') || ' comment=' || COALESCE(obj_description(m.objid, m.classid::regclass::text), '')
  FROM members m
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN tables t ON t.oid = i.indrelid
UNION ALL
SELECT 'constraint ' || c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
  FROM pg_constraint c JOIN tables t ON t.oid = c.conrelid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(g.oid) FROM pg_trigger g JOIN tables t ON t.oid = g.tgrelid
UNION ALL
SELECT 'dumped ' || e.extconfig::regclass[]::text || ' ' || COALESCE(e.extcondition::text, '')
  FROM pg_extension e WHERE e.extname = 'pg_webhook'
"#;

fn fingerprint(db: &mut Client) -> BTreeSet<String> {
    db.query(FINGERPRINT, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        // `cargo pgrx test` installs a build whose script adds the #[pg_test] functions in
        // schema "tests"; they are not part of the extension users get.
        .filter(|o| !o.starts_with("function tests.") && !o.starts_with("schema tests |"))
        .collect()
}

fn current_version() -> String {
    let control = std::fs::read_to_string(extension_dir().join("pg_webhook.control")).unwrap();
    control
        .lines()
        .find_map(|l| l.strip_prefix("default_version = "))
        .map(|v| v.trim_matches('\'').to_string())
        .expect("default_version in pg_webhook.control")
}

fn record_ids(rx: &Receiver) -> BTreeSet<i64> {
    rx.accepted()
        .iter()
        .filter_map(|r| r.json()["record"]["id"].as_i64())
        .collect()
}

#[test]
fn alter_extension_update_from_0_1_0_keeps_subscriptions_and_queued_events() {
    install_released_script("0.1.0");
    let pg = Cluster::start(&["pg_webhook.poll_interval = '200ms'"]);
    let mut db = pg.connect("postgres");
    db.batch_execute("CREATE EXTENSION pg_webhook VERSION '0.1.0'")
        .unwrap();
    let rx = Receiver::with(|_, _| Reply::Status(204));
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
        .unwrap();
    // The 0.1.0 SQL API, served by this (newer) library before the update.
    let (_, secret) = subscribe(&mut db, "orders", "orders", &rx.url("/o"), "");
    db.batch_execute(
        "INSERT INTO orders VALUES (1, 10);
         SELECT webhook.pause('orders');
         INSERT INTO orders SELECT g, g FROM generate_series(2, 50) g",
    )
    .unwrap();
    // Capture goes on; delivery waits for the SQL objects to match the library, and says so.
    wait_until(WAIT, "the worker to ask for ALTER EXTENSION", || {
        pg.log()
            .contains("delivered after ALTER EXTENSION pg_webhook UPDATE")
    });
    let queued: i64 = db
        .query_one("SELECT count(*) FROM webhook.events", &[])
        .unwrap()
        .get(0);
    assert_eq!(queued, 50);
    assert_eq!(rx.count(), 0);

    db.batch_execute("ALTER EXTENSION pg_webhook UPDATE")
        .unwrap();
    let version: String = db
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_webhook'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, current_version());

    // Writes during and after the update are captured; the backlog goes out on resume.
    db.batch_execute(
        "INSERT INTO orders SELECT g, g FROM generate_series(51, 60) g;
         SELECT webhook.resume('orders')",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while record_ids(&rx) != (1..=60).collect() {
        assert!(
            std::time::Instant::now() < deadline,
            "not every event delivered: {} of 60\n{}",
            record_ids(&rx).len(),
            pg.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in rx.accepted() {
        r.verify(&secret).unwrap();
    }
    // What the new version added works on the upgraded database.
    let pinged: bool = db
        .query_one("SELECT delivered FROM webhook.ping('orders')", &[])
        .unwrap()
        .get(0);
    assert!(pinged);

    // And it is the same extension a fresh install gives.
    db.batch_execute("CREATE DATABASE fresh").unwrap();
    let mut fresh = pg.connect("fresh");
    fresh.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
    let upgraded = fingerprint(&mut db);
    let installed = fingerprint(&mut fresh);
    let only_upgraded: Vec<_> = upgraded.difference(&installed).collect();
    let only_fresh: Vec<_> = installed.difference(&upgraded).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "the upgrade script and the install script differ.\nonly after upgrade:\n{}\nonly in a fresh install:\n{}",
        only_upgraded.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        only_fresh.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn alter_extension_update_from_0_2_0_brings_every_trigger_up_to_date() {
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let pg = Cluster::start(&["pg_webhook.poll_interval = '200ms'"]);
    let mut db = pg.connect("postgres");
    db.batch_execute("CREATE EXTENSION pg_webhook VERSION '0.2.0'")
        .unwrap();
    let rx = Receiver::start();
    db.batch_execute(
        "CREATE TABLE ledger (id int PRIMARY KEY, amount int);
         CREATE TABLE measures (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE measures_2026 PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    )
    .unwrap();
    // 0.2.0 triggers carried the owner and filter as arguments, and knew no partitions.
    subscribe(
        &mut db,
        "ledger",
        "ledger",
        &rx.url("/ledger"),
        ", events => ARRAY['insert'], ordered => true, filter => $$NEW.amount > 0$$",
    );
    subscribe(&mut db, "measures", "measures", &rx.url("/measures"), "");
    db.batch_execute("INSERT INTO ledger VALUES (1, 5), (2, -1)")
        .unwrap();
    // History from before the update (this library delivers nothing for 0.2.0 objects, so it
    // is written by hand): one delivered event of ledger, one dead after 3 attempts whose 2
    // failed ones are in the attempt log. The running totals start from it.
    db.batch_execute(
        "INSERT INTO webhook._event_archive
                (id, subscription_id, op, table_schema, table_name, created_at, attempts, status)
         VALUES (900, 1, 'INSERT', 'public', 'ledger', now(), 1, 'delivered'),
                (901, 1, 'INSERT', 'public', 'ledger', now(), 3, 'dead');
         INSERT INTO webhook._attempts
                (event_id, attempt, subscription_id, started_at, duration_ms, outcome)
         VALUES (901, 1, 1, now(), 1, 'retry'), (901, 2, 1, now(), 1, 'retry');",
    )
    .unwrap();
    let uids_before = text(
        &mut db,
        "SELECT string_agg(uid, ',' ORDER BY id) FROM webhook._subscriptions",
    );
    db.batch_execute("ALTER EXTENSION pg_webhook UPDATE")
        .unwrap();
    let args: Vec<String> = db
        .query(
            "SELECT tgrelid::regclass || ' ' || tgname || ' ' || encode(tgargs, 'escape')
               FROM pg_trigger WHERE tgname LIKE 'pg_webhook%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        args,
        vec![
            "ledger pg_webhook_1_insert 1\\000",
            "ledger pg_webhook_1_order 1\\000",
            "measures pg_webhook_2_delete 2\\000",
            "measures pg_webhook_2_insert 2\\000",
            "measures pg_webhook_2_update 2\\000",
            "measures_2026 pg_webhook_2_delete 2\\000",
            "measures_2026 pg_webhook_2_insert 2\\000",
            "measures_2026 pg_webhook_2_update 2\\000",
        ]
    );
    // Both are noted as having their triggers, so the worker's check guards them from now on.
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(subscription_id::text, ',' ORDER BY 1) FROM webhook._triggers_made"
        )
        .as_deref(),
        Some("1,2")
    );
    // The filter still applies (read from the subscription now), and a write straight into the
    // partition is captured.
    db.batch_execute(
        "INSERT INTO ledger VALUES (3, 7), (4, 0);
         INSERT INTO measures_2026 VALUES (10, '2026-03-01');",
    )
    .unwrap();
    let got = rx.wait_for(3, WAIT);
    let mut ids: Vec<i64> = got
        .iter()
        .filter_map(|r| r.json()["record"]["id"].as_i64())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1, 3, 10]);
    // The update notes the subscriptions as made here: the worker keeps their uids.
    let uids_after = text(
        &mut db,
        "SELECT string_agg(uid, ',' ORDER BY id) FROM webhook._subscriptions",
    );
    assert_eq!(uids_before, uids_after);
    let ledger_uid = uids_after.unwrap_or_default();
    let ledger_uid = ledger_uid.split(',').next().unwrap_or_default();
    let ledger_ids: Vec<String> = got
        .iter()
        .filter(|r| r.path == "/ledger")
        .map(|r| r.id())
        .collect();
    assert!(
        !ledger_ids.is_empty()
            && ledger_ids
                .iter()
                .all(|id| id.starts_with(&format!("msg_{ledger_uid}_"))),
        "ledger's webhook-ids keep their prefix: {ledger_ids:?}"
    );
    wait_until(
        WAIT,
        "the totals to count the history and the new deliveries",
        || {
            text(
                &mut db,
                "SELECT string_agg(concat_ws(' ', name, delivered_total, dead_total,
                                         failed_attempts_total), ', ' ORDER BY name)
               FROM webhook.subscription_stats",
            )
            .as_deref()
                == Some("ledger 3 1 3, measures 1 0 0")
        },
    );
    db.batch_execute("CREATE DATABASE fresh").unwrap();
    let mut fresh = pg.connect("fresh");
    fresh.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
    let upgraded = fingerprint(&mut db);
    let installed = fingerprint(&mut fresh);
    let only_upgraded: Vec<_> = upgraded.difference(&installed).collect();
    let only_fresh: Vec<_> = installed.difference(&upgraded).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "the upgrade script and the install script differ.\nonly after upgrade:\n{}\nonly in a fresh install:\n{}",
        only_upgraded.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        only_fresh.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn a_session_that_captured_before_alter_extension_update_fills_the_new_columns_after_it() {
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let pg = Cluster::start(&[]);
    let mut admin = pg.connect("postgres");
    admin
        .batch_execute(
            "CREATE EXTENSION pg_webhook VERSION '0.2.0';
             CREATE TABLE notes (id int PRIMARY KEY, body text)",
        )
        .unwrap();
    let rx = Receiver::start();
    subscribe(&mut admin, "notes", "notes", &rx.url("/n"), "");
    admin
        .batch_execute("SELECT webhook.pause('notes')")
        .unwrap();
    // The writer's backend learns where the queue's columns are from a 0.2.0 queue...
    let mut writer = pg.connect("postgres");
    writer
        .batch_execute("INSERT INTO notes VALUES (1, 'before')")
        .unwrap();
    // ...another session adds columns to it...
    admin
        .batch_execute("ALTER EXTENSION pg_webhook UPDATE")
        .unwrap();
    // ...and the writer's next event fills them: payload_bytes (NOT NULL, the size of the row
    // images) at least the record's stored size, as the update script computed it for the first
    // event. A stale layout would leave it NULL.
    writer
        .batch_execute("INSERT INTO notes VALUES (2, 'after')")
        .unwrap();
    let sized: Vec<(i32, Option<bool>)> = admin
        .query(
            "SELECT (record->>'id')::int, payload_bytes >= pg_column_size(record)
               FROM webhook._event_queue ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(sized, vec![(1, Some(true)), (2, Some(true))]);
}

/// (name, uid, secret, status) of every subscription.
fn subscriptions(db: &mut Client) -> Vec<(String, String, String, String)> {
    db.query(
        "SELECT name, uid, secret, status FROM webhook.subscriptions ORDER BY name",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[test]
fn pg_dump_and_pg_restore_keep_subscriptions_but_not_the_queue() {
    // The worker serves the restored database.
    let pg = Cluster::start(&[
        "pg_webhook.database = 'restored'",
        "pg_webhook.poll_interval = '200ms'",
    ]);
    let mut admin = pg.connect("postgres");
    admin.batch_execute("CREATE DATABASE original").unwrap();
    let mut db = pg.connect("original");
    db.batch_execute(
        "CREATE EXTENSION pg_webhook;
         CREATE TABLE customers (id int PRIMARY KEY, email text, plan text)",
    )
    .unwrap();
    let rx = Receiver::start();
    let (_, secret) = subscribe(
        &mut db,
        "customers",
        "customers",
        &rx.url("/c"),
        ", events => ARRAY['insert'], exclude_columns => ARRAY['email'], filter => $$NEW.plan <> 'free'$$, format => 'standard'",
    );
    subscribe(&mut db, "held", "customers", &rx.url("/held"), "");
    db.batch_execute("SELECT webhook.pause('held')").unwrap();
    // No worker serves this database: these stay queued, and must not be restored.
    db.batch_execute("INSERT INTO customers VALUES (1, 'a@example.com', 'pro')")
        .unwrap();
    let before = subscriptions(&mut db);
    let last_event: i64 = db
        .query_one("SELECT max(id) FROM webhook.events", &[])
        .unwrap()
        .get(0);

    let dump = pg.dir.join("original.dump");
    pg.tool(
        "pg_dump",
        &["-Fc", "-d", "original", "-f", dump.to_str().unwrap()],
    );
    admin.batch_execute("CREATE DATABASE restored").unwrap();
    pg.tool(
        "pg_restore",
        &["--exit-on-error", "-d", "restored", dump.to_str().unwrap()],
    );

    let mut restored = pg.connect("restored");
    let after = subscriptions(&mut restored);
    // Uids are renewed in the copy (tests/copies.rs); the rest survives.
    let without_uid = |subs: &[(String, String, String, String)]| -> Vec<(String, String, String)> {
        subs.iter()
            .map(|(name, _, secret, status)| (name.clone(), secret.clone(), status.clone()))
            .collect()
    };
    assert_eq!(
        without_uid(&before),
        without_uid(&after),
        "subscriptions and secrets survive"
    );
    let queued: i64 = restored
        .query_one("SELECT count(*) FROM webhook.events", &[])
        .unwrap()
        .get(0);
    assert_eq!(queued, 0, "queue contents are not dumped");

    // The restored triggers capture, and the worker delivers with the same secret and shape.
    restored
        .batch_execute(
            "INSERT INTO customers VALUES (2, 'b@example.com', 'pro'), (3, 'c@example.com', 'free')",
        )
        .unwrap();
    let got = rx.wait_for(1, WAIT);
    got[0].verify(&secret).unwrap();
    let original_uid = &before[0].1;
    assert!(
        !got[0].id().starts_with(&format!("msg_{original_uid}_")),
        "the copy sends webhook-ids of its own: {}",
        got[0].id()
    );
    let body = got[0].json();
    assert_eq!(body["type"], "customers.insert");
    assert_eq!(body["data"]["record"]["id"], 2);
    assert!(body["data"]["record"].get("email").is_none(), "{body}");
    let new_event: i64 = restored
        .query_one("SELECT max(id) FROM webhook.events", &[])
        .unwrap()
        .get(0);
    assert!(
        new_event > last_event,
        "event ids continue after the dump, so webhook-ids are never reused"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rx.requests().iter().all(|r| r.path == "/c"),
        "the paused subscription stays paused"
    );
    assert_eq!(rx.count(), 1, "the filter still applies after restore");
}

#[test]
fn a_restore_into_another_cluster_keeps_each_filter_running_as_its_owner() {
    // Roles get other OIDs in another cluster: a filter's owner must be found by the name the
    // dump carries, not by the OID it had where it was made.
    let source = Cluster::start(&[]);
    let mut db = source.client_with_extension();
    db.batch_execute(
        "CREATE ROLE filler1 LOGIN; CREATE ROLE filler2 LOGIN; CREATE ROLE alice LOGIN;
         GRANT webhook_admin TO alice; GRANT CREATE ON SCHEMA public TO alice;",
    )
    .unwrap();
    let rx = Receiver::start();
    let mut alice = source.connect_as("postgres", "alice");
    alice
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, total int);
             CREATE FUNCTION public.big_enough(total int) RETURNS boolean LANGUAGE sql
                 AS $$ SELECT total > 10 $$;
             REVOKE EXECUTE ON FUNCTION public.big_enough(int) FROM PUBLIC;",
        )
        .unwrap();
    subscribe(
        &mut alice,
        "big",
        "orders",
        &rx.url("/big"),
        ", events => ARRAY['insert'], filter => $$public.big_enough(NEW.total)$$",
    );
    let dump = source.dir.join("app.dump");
    source.tool(
        "pg_dump",
        &["-Fc", "-d", "postgres", "-f", dump.to_str().unwrap()],
    );
    let target = Cluster::start(&[]);
    let mut admin = target.connect("postgres");
    // alice comes first here: her OID is another one than in the source.
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE filler1 LOGIN; CREATE ROLE filler2 LOGIN",
        )
        .unwrap();
    admin.batch_execute("CREATE DATABASE app").unwrap();
    let oid = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT oid::bigint FROM pg_roles WHERE rolname = 'alice'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_ne!(
        oid(&mut db),
        oid(&mut admin),
        "the test needs different OIDs"
    );
    target.tool(
        "pg_restore",
        &["--exit-on-error", "-d", "app", dump.to_str().unwrap()],
    );
    let mut restored = target.connect("app");
    restored
        .batch_execute("INSERT INTO orders VALUES (1, 5), (2, 50)")
        .unwrap();
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 2);
    let owner: String = restored
        .query_one("SELECT owner::text FROM webhook.subscriptions", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "alice");
}

#[test]
fn a_session_goes_on_capturing_after_another_role_makes_the_extension_again() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut admin = pg.connect("postgres");
    admin
        .batch_execute(
            "CREATE ROLE first_owner SUPERUSER LOGIN;
             CREATE ROLE second_owner SUPERUSER LOGIN;
             CREATE TABLE t (id int PRIMARY KEY);",
        )
        .unwrap();
    let mut first = pg.connect_as("postgres", "first_owner");
    first.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
    subscribe(&mut first, "one", "t", &rx.url("/one"), "");
    // A long-lived session captures, so it knows who owns the extension.
    let mut writer = pg.connect("postgres");
    writer.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    wait_until(WAIT, "the first subscription's event", || {
        rx.requests().iter().any(|r| r.path == "/one")
    });
    admin
        .batch_execute("DROP EXTENSION pg_webhook CASCADE")
        .unwrap();
    let mut second = pg.connect_as("postgres", "second_owner");
    second.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
    // The schema CREATE EXTENSION made is not the extension's: it outlives it.
    admin
        .batch_execute("REASSIGN OWNED BY first_owner TO second_owner; DROP ROLE first_owner")
        .unwrap();
    subscribe(&mut second, "two", "t", &rx.url("/two"), "");
    writer
        .batch_execute("INSERT INTO t VALUES (2)")
        .unwrap_or_else(|e| panic!("a write after the extension was made again: {e:?}"));
    wait_until(WAIT, "the second subscription's event", || {
        rx.requests()
            .iter()
            .any(|r| r.path == "/two" && String::from_utf8_lossy(&r.body).contains("\"id\": 2"))
    });
}

#[test]
fn drop_extension_while_the_workers_deliver_is_not_refused_as_a_deadlock() {
    // The worker's passes lock pg_webhook's tables in their own order, DROP EXTENSION in its
    // own; in a lock cycle the worker gives way (its deadlock timeout is the shorter).
    let pg = Cluster::start(&["pg_webhook.poll_interval = '10ms'"]);
    let rx = Receiver::start();
    let mut db = pg.connect("postgres");
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    for round in 0..ROUNDS {
        db.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
        let path = format!("/round{round}");
        subscribe(&mut db, "t", "t", &rx.url(&path), "");
        db.batch_execute(&format!(
            "INSERT INTO t SELECT {round} * 1000 + g FROM generate_series(1, 200) g"
        ))
        .unwrap();
        wait_until(WAIT, "the round's first event", || {
            rx.requests().iter().any(|r| r.path == path)
        });
        db.batch_execute("DROP EXTENSION pg_webhook CASCADE")
            .unwrap_or_else(|e| panic!("round {round}: DROP EXTENSION: {e:?}"));
    }
}

/// Rounds of the DROP EXTENSION test: the lock cycle it guards against needs a worker pass
/// and the DROP to meet.
const ROUNDS: u32 = 20;

#[test]
fn the_update_to_0_3_0_refuses_a_schema_that_grants_create() {
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let pg = Cluster::start(&[]);
    let mut db = pg.connect("postgres");
    db.batch_execute(
        "CREATE EXTENSION pg_webhook VERSION '0.2.0';
         GRANT CREATE ON SCHEMA webhook TO PUBLIC;",
    )
    .unwrap();
    let e = db
        .batch_execute("ALTER EXTENSION pg_webhook UPDATE")
        .expect_err("an update into a schema anyone may add to");
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("schema webhook grants CREATE to PUBLIC")),
        "{e:?}"
    );
    db.batch_execute(
        "REVOKE CREATE ON SCHEMA webhook FROM PUBLIC; ALTER EXTENSION pg_webhook UPDATE;",
    )
    .unwrap();
}

#[test]
fn an_event_of_an_extension_made_again_is_not_mistaken_for_a_dropped_one_in_flight() {
    // Event ids start over in an extension made again. A worker that did not notice the drop
    // (dropped and made in one transaction while its request was out) still had the old event
    // 1 in flight when the new event 1 came: the claim skipped the new one as its own, and its
    // cursor went past it.
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|r, _| match r.path.as_str() {
        "/one" => Reply::Delay(Duration::from_secs(3), 204),
        _ => Reply::Status(204),
    });
    let mut db = pg.connect("postgres");
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE EXTENSION pg_webhook")
        .unwrap();
    subscribe(&mut db, "one", "t", &rx.url("/one"), "");
    db.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    wait_until(WAIT, "the first event's request", || {
        rx.requests().iter().any(|r| r.path == "/one")
    });
    db.batch_execute(
        "BEGIN; DROP EXTENSION pg_webhook CASCADE; CREATE EXTENSION pg_webhook; COMMIT;",
    )
    .unwrap();
    subscribe(&mut db, "two", "t", &rx.url("/two"), "");
    db.batch_execute("INSERT INTO t VALUES (2)").unwrap();
    assert_eq!(
        text(&mut db, "SELECT min(id)::text FROM webhook.events").as_deref(),
        Some("1"),
        "the new event has the id the old one had"
    );
    wait_until(WAIT, "the new extension's event", || {
        rx.requests()
            .iter()
            .any(|r| r.path == "/two" && String::from_utf8_lossy(&r.body).contains("\"id\": 2"))
    });
    wait_until(WAIT, "the new event recorded as delivered", || {
        text(&mut db, "SELECT status FROM webhook.events WHERE id = 1").as_deref()
            == Some("delivered")
    });
}

#[test]
fn a_callback_batch_read_before_the_extension_was_made_again_is_read_again() {
    // The runner reads callbacks 50 at a time and runs each in a transaction of its own. The
    // extension dropped and made again (here with a restored event and callback, as a
    // pg_restore in one transaction would) while the first runs: the second was read from the
    // old one, with its subscription's function and owner; the new one's event with the same
    // id must go to the new subscription's callback.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.connect("postgres");
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (sub text, id int);
         CREATE FUNCTION public.cb_old(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.called VALUES ('old', (e->'record'->>'id')::int);
             IF (e->'record'->>'id')::int = 1 THEN PERFORM pg_catalog.pg_sleep(2); END IF;
         END $$;
         CREATE FUNCTION public.cb_new(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ('new', (e->'record'->>'id')::int) $$;
         CREATE EXTENSION pg_webhook",
    )
    .unwrap();
    subscribe(
        &mut db,
        "old",
        "t",
        &rx.url("/old"),
        ", callback => 'public.cb_old(jsonb)'",
    );
    let runner = pg.callback_runner_pid(&mut db);
    pg.kill("STOP", runner);
    db.batch_execute("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)")
        .unwrap();
    wait_until(WAIT, "both callbacks to be queued", || {
        text(
            &mut db,
            "SELECT count(*)::text FROM webhook._callback_queue",
        )
        .as_deref()
            == Some("2")
    });
    // Event ids are handed out in ranges per session: the new extension's event gets the id
    // the old second one had.
    let second = text(
        &mut db,
        "SELECT max(event_id)::text FROM webhook._callback_queue",
    )
    .unwrap_or_default();
    pg.kill("CONT", runner);
    wait_until(WAIT, "the first callback to run", || {
        text(
            &mut db,
            &format!("SELECT wait_event FROM pg_stat_activity WHERE pid = {runner}"),
        )
        .as_deref()
            == Some("PgSleep")
    });
    db.batch_execute(&format!(
        "BEGIN;
         DROP EXTENSION pg_webhook CASCADE;
         CREATE EXTENSION pg_webhook;
         SELECT * FROM webhook.subscribe('new', 't', '{}', callback => 'public.cb_new(jsonb)');
         INSERT INTO webhook._event_archive
             (id, subscription_id, op, table_schema, table_name, record, created_at, attempts, status)
         SELECT {second}, id, 'INSERT', 'public', 't', '{{\"id\": 777}}', now(), 1, 'delivered'
           FROM webhook._subscriptions WHERE name = 'new';
         INSERT INTO webhook._callback_queue (event_id, subscription_id)
         SELECT {second}, id FROM webhook._subscriptions WHERE name = 'new';
         COMMIT;",
        rx.url("/new")
    ))
    .unwrap();
    wait_until(WAIT, "the new extension's callback", || {
        text(&mut db, "SELECT min(sub) FROM called WHERE id = 777").is_some()
    });
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(sub, ',' ORDER BY sub) FROM called WHERE id = 777"
        )
        .as_deref(),
        Some("new"),
        "the old subscription's callback got the new extension's event"
    );
}
