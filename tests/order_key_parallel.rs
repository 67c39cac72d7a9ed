//! Per-key order (`order_key`) under concurrent writers: events of one key in commit order
//! while keys go in parallel (for a filtered subscription too), a failing key holding back only
//! its own events, and writers of different keys never waiting for each other. One scenario per
//! test.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{error_of, exec, subscribe, WAIT};

const KEYS: i32 = 8;

/// (account, seq) of each accepted request, in the order they were accepted.
fn arrivals(rx: &Receiver) -> Vec<(i64, i64)> {
    keys(&rx.accepted())
}

/// (account, seq) of each of `requests`, in their order.
fn keys(requests: &[Request]) -> Vec<(i64, i64)> {
    requests
        .iter()
        .map(|r| {
            let record = &r.json()["record"];
            (
                record["account"].as_i64().unwrap_or(-1),
                record["seq"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Checks that every account's events arrived as 1, 2, 3, … (each once, none missing).
fn assert_in_order_per_key(arrived: &[(i64, i64)], expected: &HashMap<i64, i64>) {
    let mut next: HashMap<i64, i64> = HashMap::new();
    for (account, seq) in arrived {
        let want = next.entry(*account).or_insert(1);
        assert_eq!(
            *seq, *want,
            "account {account}: got seq {seq}, expected {want}"
        );
        *want += 1;
    }
    for (account, n) in expected {
        assert_eq!(
            next.get(account).copied().unwrap_or(1) - 1,
            *n,
            "account {account}"
        );
    }
}

/// `ledger` rows carry a per-account sequence taken from a counter row in the same
/// transaction, so seq order per account is commit order.
fn ledger(pg: &Cluster, extra: &str, rx: &Receiver) {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!(
            "CREATE TABLE counters (account int PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO counters SELECT g, 0 FROM generate_series(0, {}) g;
             CREATE TABLE ledger (id bigserial PRIMARY KEY, account int, seq int, note text);",
            KEYS - 1
        ),
    );
    subscribe(
        &mut db,
        "ledger",
        "ledger",
        &rx.url("/ledger"),
        &format!(", order_key => ARRAY['account']{extra}"),
    );
}

/// Four writers, `per_writer` transactions each on random accounts; returns the rows per
/// account.
fn write_concurrently(pg: &Cluster, per_writer: usize) -> HashMap<i64, i64> {
    std::thread::scope(|s| {
        for w in 0..4u64 {
            s.spawn(move || {
                let mut c = pg.connect("postgres");
                let mut state = w * 7919 + 17;
                for _ in 0..per_writer {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let account = ((state >> 33) % KEYS as u64) as i32;
                    exec(
                        &mut c,
                        &format!(
                            "WITH u AS (UPDATE counters SET n = n + 1 WHERE account = {account}
                                        RETURNING n)
                             INSERT INTO ledger (account, seq, note) SELECT {account}, n, 'w{w}' FROM u"
                        ),
                    );
                }
            });
        }
    });
    let mut db = pg.connect("postgres");
    let mut totals = HashMap::new();
    for row in db
        .query(
            "SELECT account::int8, n::int8 FROM counters WHERE n > 0",
            &[],
        )
        .unwrap_or_else(|e| panic!("counters: {e}"))
    {
        totals.insert(row.get::<_, i64>(0), row.get::<_, i64>(1));
    }
    totals
}

#[test]
fn each_keys_events_arrive_in_commit_order_while_keys_go_in_parallel() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(5), 204));
    ledger(&pg, "", &rx);
    let totals = write_concurrently(&pg, 60);
    let all: i64 = totals.values().sum();
    wait_until(WAIT, "every event", || rx.accepted().len() as i64 >= all);
    assert_in_order_per_key(&arrivals(&rx), &totals);
    assert!(
        rx.peak_concurrency() >= 2,
        "different keys were never in flight together"
    );
}

#[test]
fn per_key_order_holds_for_a_filtered_subscription() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(2), 204));
    ledger(
        &pg,
        ", events => ARRAY['insert'], filter => 'NEW.seq > 0', exclude_columns => ARRAY['note']",
        &rx,
    );
    let totals = write_concurrently(&pg, 30);
    let all: i64 = totals.values().sum();
    wait_until(WAIT, "every event", || rx.accepted().len() as i64 >= all);
    assert_in_order_per_key(&arrivals(&rx), &totals);
    assert!(rx
        .accepted()
        .iter()
        .all(|r| r.json()["record"].get("note").is_none()));
}

#[test]
fn a_failing_key_holds_back_only_its_own_events() {
    let pg = Cluster::start(&[]);
    // Account 3 is refused until the gate opens, then accepted: the gate, not a count of
    // refusals, so that a slow test thread cannot see account 3 accepted before it looked.
    let gate = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (open, r) = (gate.clone(), refused.clone());
    let rx = Receiver::with(move |req: &Request, _| {
        let account = req.json()["record"]["account"].as_i64();
        if account == Some(3) && !open.load(std::sync::atomic::Ordering::SeqCst) {
            r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    ledger(
        &pg,
        ", retry_schedule => ARRAY['300 milliseconds']::interval[], max_attempts => 100",
        &rx,
    );
    let mut db = pg.connect("postgres");
    for seq in 1..=3 {
        for account in [1, 2, 3, 4] {
            exec(
                &mut db,
                &format!("INSERT INTO ledger (account, seq) VALUES ({account}, {seq})"),
            );
        }
    }
    wait_until(
        WAIT,
        "accounts 1, 2 and 4, and account 3 refused twice",
        || {
            arrivals(&rx).iter().filter(|(a, _)| *a != 3).count() == 9
                && refused.load(std::sync::atomic::Ordering::SeqCst) >= 2
        },
    );
    let early = arrivals(&rx).iter().filter(|(a, _)| *a == 3).count();
    assert_eq!(early, 0, "account 3 is still being refused");
    let tried: Vec<i64> = (keys(&rx.requests()).into_iter())
        .filter(|(account, _)| *account == 3)
        .map(|(_, seq)| seq)
        .collect();
    assert!(
        tried.iter().all(|seq| *seq == 1),
        "only account 3's first event is tried while it fails: {tried:?}"
    );
    gate.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_until(WAIT, "account 3, once accepted", || {
        arrivals(&rx).iter().filter(|(a, _)| *a == 3).count() == 3
    });
    let expected: HashMap<i64, i64> = [(1, 3), (2, 3), (3, 3), (4, 3)].into_iter().collect();
    assert_in_order_per_key(&arrivals(&rx), &expected);
}

#[test]
fn writers_wait_only_for_writers_of_the_same_key() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    ledger(&pg, "", &rx);
    let other = support::account_in_another_lock_bucket(&mut pg.connect("postgres"), 0);
    let mut first = pg.connect("postgres");
    exec(
        &mut first,
        "BEGIN; INSERT INTO ledger (account, seq) VALUES (0, 1);",
    );
    let mut second = pg.connect("postgres");
    exec(
        &mut second,
        &format!("SET lock_timeout = '2s'; INSERT INTO ledger (account, seq) VALUES ({other}, 1);"),
    );
    let e = error_of(
        &mut second,
        "SET lock_timeout = '300ms'; INSERT INTO ledger (account, seq) VALUES (0, 2);",
    );
    assert!(e.contains("lock timeout"), "{e}");
    exec(&mut first, "COMMIT");
    exec(
        &mut second,
        "SET lock_timeout = '2s'; INSERT INTO ledger (account, seq) VALUES (0, 2);",
    );
    wait_until(WAIT, "the three events", || rx.accepted().len() == 3);
}

#[test]
fn the_lock_buckets_pg_locks_shows_tell_nothing_of_the_keys_written() {
    // Every session reads pg_locks. A writer's key locks were in bucket hash % 256, which any
    // role could compute for a guessed value (hashint4 is PUBLIC): 8 bits of each key
    // written, to roles that may not read the table. The bucket mixes in the subscription's
    // private salt now.
    use pg_webhook_core::order_key::bucket;
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    ledger(&pg, "", &rx);
    let mut writer = pg.connect("postgres");
    exec(
        &mut writer,
        "BEGIN; INSERT INTO ledger (account, seq) SELECT g, 1 FROM generate_series(1, 8) g",
    );
    let mut db = pg.connect("postgres");
    let held: BTreeSet<i64> = db
        .query(
            "SELECT l.objid::int8 FROM pg_locks l, webhook.subscriptions s
              WHERE l.locktype = 'advisory' AND l.objsubid = 4 AND l.classid = s.id
                AND s.name = 'ledger'",
            &[],
        )
        .expect("reading pg_locks")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let salt: i64 = db
        .query_one("SELECT lock_salt FROM webhook._subscriptions", &[])
        .expect("reading the salt")
        .get(0);
    let (mut plain, mut salted) = (BTreeSet::new(), BTreeSet::new());
    for account in 1..=8 {
        let key = support::account_key(&mut db, account);
        plain.insert((key as u64 % 256) as i64);
        salted.insert(i64::from(bucket(key, salt)));
    }
    assert_eq!(held, salted, "the buckets held");
    assert_ne!(held, plain, "the buckets are the keys' hashes' low bits");
    exec(&mut writer, "COMMIT");
}
