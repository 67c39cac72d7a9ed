//! Shared by the end-to-end test binaries: a throwaway cluster and a real HTTP receiver.
#![allow(dead_code)]

pub mod cluster;
pub mod receiver;

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
