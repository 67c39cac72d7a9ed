//! Shared by the end-to-end test binaries: a throwaway cluster and a real HTTP receiver.
#![allow(dead_code)]

pub mod backfill;
pub mod bob;
pub mod cluster;
pub mod events;
pub mod faults;
pub mod keyed;
pub mod mallory;
pub mod nested;
pub mod orphans;
pub mod patroni;
pub mod receiver;
pub mod runner;
pub mod silent;
pub mod tls;
pub mod unnamed;

use postgres::Client;

/// Creates a subscription and returns (id, secret).
pub fn subscribe(
    client: &mut Client,
    name: &str,
    table: &str,
    url: &str,
    extra: &str,
) -> (i32, String) {
    let sql = format!(
        "SELECT id, secret FROM webhook.subscribe(name => $1, target => $2::text::regclass, url => $3{extra})"
    );
    let row = client
        .query_one(&sql, &[&name, &table, &url])
        .unwrap_or_else(|e| {
            let detail = e
                .as_db_error()
                .map(|d| format!("{} ({:?})", d.message(), d.where_()));
            panic!("subscribe {name}: {e} {detail:?}")
        });
    (row.get(0), row.get(1))
}
pub mod sink;

/// A cluster whose requests may carry 2 kB (transactions go in small parts), polling every
/// 100 ms.
pub fn small_parts_cluster() -> cluster::Cluster {
    cluster::Cluster::start(&[
        "pg_webhook.max_payload_bytes = '2kB'",
        "pg_webhook.poll_interval = '100ms'",
    ])
}

/// Table `t (id int PRIMARY KEY, pad text)` subscribed as `t`, grouped by transaction (with
/// `extra` options), to `rx`.
pub fn grouped_table(pg: &cluster::Cluster, rx: &receiver::Receiver, extra: &str) -> Client {
    padded_table(pg, rx, &format!(", group_by => 'transaction'{extra}"))
}

/// Table `t (id int PRIMARY KEY, pad text)` subscribed as `t` (with `options`) to `rx`.
pub fn padded_table(pg: &cluster::Cluster, rx: &receiver::Receiver, options: &str) -> Client {
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, pad text)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), options);
    db
}

/// An int account (1 to 99) whose `order_key` lock bucket is not `account`'s, for the one
/// subscription with an order key (`db` a superuser's session): an int column's part of the
/// key is its hash as the database's hash function for int4 makes it, and the bucket mixes in
/// the subscription's lock salt.
pub fn account_in_another_lock_bucket(db: &mut Client, account: i32) -> i32 {
    use pg_webhook_core::order_key::bucket;
    let salt: i64 = db
        .query_one(
            "SELECT lock_salt FROM webhook._subscriptions WHERE order_key IS NOT NULL",
            &[],
        )
        .expect("the keyed subscription's lock salt")
        .get(0);
    let mut key = |account: i32| bucket(account_key(db, account), salt);
    let own = key(account);
    (1..100)
        .find(|a| *a != account && key(*a) != own)
        .unwrap_or_else(|| panic!("no account outside bucket {own}"))
}

/// The order key hash of an `int` key column's value `account`, as capture makes it: the
/// type's hash function (`hashint4`, support function 1 of its hash class) as an unsigned
/// 32-bit part.
pub fn account_key(db: &mut Client, account: i32) -> i64 {
    use pg_webhook_core::order_key::{key_hash, KeyPart};
    let h: i32 = db
        .query_one("SELECT pg_catalog.hashint4($1)", &[&account])
        .expect("hashing an account")
        .get(0);
    key_hash([KeyPart::Value(u64::from(h as u32))])
}

/// How long a test waits for something that should happen within seconds.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// For what takes longer: ordered delivery with retries, a queue settling after a fault.
pub const LONG_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

/// The error `sql` raised (message, then detail and hint, ` | `-separated); panics if it
/// succeeded or failed other than with a database error.
pub fn error_of(db: &mut Client, sql: &str) -> String {
    match db.batch_execute(sql) {
        Ok(()) => panic!("no error for: {sql}"),
        Err(e) => {
            let db_error = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
            let mut text = db_error.message().to_string();
            if let Some(d) = db_error.detail() {
                text.push_str(" | ");
                text.push_str(d);
            }
            if let Some(h) = db_error.hint() {
                text.push_str(" | ");
                text.push_str(h);
            }
            text
        }
    }
}

/// The single bigint `sql` returns; a query error fails the test with its message.
pub fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

/// The single text `sql` returns (NULL as None); a query error fails the test.
pub fn text(db: &mut Client, sql: &str) -> Option<String> {
    db.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

/// How many of the events `webhook.events` shows are in each status, as `status=n,…` in
/// status order ("" when there are none).
pub fn status_counts(db: &mut Client) -> String {
    db.query_one(
        "SELECT coalesce(string_agg(status || '=' || n, ',' ORDER BY status), '')
           FROM (SELECT status, count(*) AS n FROM webhook.events GROUP BY status) s",
        &[],
    )
    .unwrap()
    .get(0)
}

/// A superuser's session with the extension, and sessions of new login roles `names` (made in
/// that order, so their OIDs follow it), each a webhook_admin member who may create in schema
/// public.
pub fn webhook_admins<const N: usize>(
    pg: &cluster::Cluster,
    names: [&str; N],
) -> (Client, [Client; N]) {
    let mut su = pg.client_with_extension();
    let roles = names.join(", ");
    let create: String = names
        .iter()
        .map(|n| format!("CREATE ROLE {n} LOGIN; "))
        .collect();
    exec(
        &mut su,
        &format!(
            "{create}GRANT webhook_admin TO {roles}; GRANT CREATE ON SCHEMA public TO {roles};"
        ),
    );
    (su, names.map(|n| pg.connect_as("postgres", n)))
}

/// Runs `sql`; a query error fails the test with its message.
pub fn exec(db: &mut Client, sql: &str) {
    db.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

/// Changes a server setting for the whole cluster and reloads the configuration:
/// `alter_system(db, "SET pg_webhook.max_payload_bytes = '2kB'")`, or `"RESET …"`. The reload
/// reaches the other processes (workers included) a moment later, not before this returns.
pub fn alter_system(db: &mut Client, change: &str) {
    exec(db, &format!("ALTER SYSTEM {change}"));
    exec(db, "SELECT pg_reload_conf()");
}

/// A subscription `probe` on a table `probe` made here, one attempt per event, to `url` (give it
/// a receiver of its own), for `policy_applied`.
pub fn probe_subscription(db: &mut Client, url: &str) {
    exec(db, "CREATE TABLE probe (id serial PRIMARY KEY)");
    subscribe(db, "probe", "probe", url, ", max_attempts => 1");
}

/// Waits until the worker sends under the settings a reload just changed: rows go into table
/// `probe` (see `probe_subscription`) one at a time, each waited for, until one's event ends
/// `status` ("dead" once its destination is refused, "delivered" once allowed). A reload
/// reaches the worker a moment after the session that asked for it, and a claim under way then
/// still goes out under the old settings: neither a sleep nor this session seeing the new value
/// says that the worker has it.
pub fn policy_applied(db: &mut Client, status: &str) {
    let event = "FROM webhook.events e JOIN webhook.subscriptions s ON s.id = e.subscription_id
                 WHERE s.name = 'probe' AND (e.record->>'id')::bigint =";
    cluster::wait_until(WAIT, &format!("a probe event to end {status}"), || {
        let id = count(db, "INSERT INTO probe DEFAULT VALUES RETURNING id::bigint");
        let ended = format!("SELECT count(*) {event} {id} AND e.status <> 'pending'");
        cluster::wait_until(WAIT, "the probe event to end", || count(db, &ended) == 1);
        count(
            db,
            &format!("SELECT count(*) {event} {id} AND e.status = '{status}'"),
        ) == 1
    });
}

/// A database error with its detail and hint.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "{} (detail: {:?}, hint: {:?}, where: {:?})",
            d.message(),
            d.detail(),
            d.hint(),
            d.where_()
        ),
        None => e.to_string(),
    }
}

/// A subscription on `table` (named "ended") made and unsubscribed: its id.
pub fn ended_subscription(db: &mut Client, url: &str, table: &str) -> i32 {
    let (ended, _) = subscribe(db, "ended", table, url, "");
    exec(db, "SELECT webhook.unsubscribe('ended')");
    ended
}

/// A trigger `name` on `table` like a capture trigger, naming subscription `id`, which has
/// ended: the worker's trigger check drops it at its next pass, which makes it a sign that a
/// pass ran.
pub fn stray_trigger(db: &mut Client, table: &str, name: &str, id: i32) {
    exec(
        db,
        &format!(
            "CREATE TRIGGER {name} AFTER INSERT ON {table} REFERENCING NEW TABLE AS pg_webhook_new
                 FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('{id}')"
        ),
    );
}

/// The most memory the process `pid` has held (VmHWM), in MiB.
pub fn peak_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no VmHWM line in /proc/{pid}/status:\n{status}"));
    kib / 1024
}
