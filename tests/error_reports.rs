//! Errors raised through pg_webhook's hooks carry what PostgreSQL says, not a Rust backtrace.
//! pgrx captures one for each ERROR raised under its guards, and with `RUST_BACKTRACE` set in
//! the server's environment every such error — any session's `SELECT 1/0`, whose division the
//! planner folds under pg_webhook's planner hook — carried the Rust and C frames in its
//! DETAIL, to every client.

mod support;

use support::cluster::Cluster;

#[test]
fn an_error_through_pg_webhooks_hooks_carries_no_rust_backtrace() {
    let pg = Cluster::start(&[]);
    drop(pg.client_with_extension());
    pg.restart_with_env(&["RUST_BACKTRACE=1"]);
    let mut db = pg.connect("postgres");
    let error = db
        .batch_execute("SELECT 1/0")
        .expect_err("a division by zero");
    let error = error.as_db_error().expect("an error from the server");
    assert_eq!(error.message(), "division by zero");
    assert_eq!(
        error.detail(),
        None,
        "{:.400}",
        error.detail().unwrap_or_default()
    );
}
