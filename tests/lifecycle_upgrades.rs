//! The extension upgraded in place: from the first releases with live subscriptions and queued
//! events, with sessions that captured before the update, into the same objects a fresh install
//! makes; and an update refused where the schema would let anyone add to it.

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
                     || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
                     || ' view=' || COALESCE(CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END, '')
                     || ' columns=' || COALESCE((
                         SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                || ' storage ' || a.attstorage::text
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
