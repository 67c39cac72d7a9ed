//! `webhook.ping()`: one signed test request to a subscription's endpoint, sent from the
//! caller's own backend so the answer comes back at once. Nothing is queued or recorded, so a
//! ping never disturbs the order, retries or statistics of real events.
//!
//! The request goes through the same client as deliveries: the address policy, CA bundle,
//! headers, timeout and (during a rotation) both secrets apply.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pg_webhook_core::http::Message;
use pg_webhook_core::payload::{ping_body, Envelope, Format};
use pgrx::prelude::*;

use crate::error::{invalid, spi};
use crate::guc::WorkerSettings;
use crate::manage::find_managed;
use crate::privilege::as_extension_owner;

const TARGET: &str = include_str!("../sql/queries/ping_target.sql");

/// How often a waiting ping looks for a query cancel.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// Where a ping goes and what it says, read as the extension owner.
struct PingTarget {
    row: crate::queue::SubscriptionRow,
    schema: String,
    table: String,
    database: String,
    now: String,
}

fn load(id: i32) -> Option<PingTarget> {
    as_extension_owner(|| {
        spi(
            "reading the subscription",
            Spi::connect(|client| {
                let Some(row) = crate::queue::subscription_by_id(id)? else {
                    return Ok(None);
                };
                let names = client.select(TARGET, Some(1), &[id.into()])?;
                if names.is_empty() {
                    return Ok(None);
                }
                let names = names.first();
                Ok(Some(PingTarget {
                    row,
                    schema: names.get(1)?.unwrap_or_default(),
                    table: names.get(2)?.unwrap_or_default(),
                    database: crate::sql::database_name().unwrap_or_default(),
                    now: names.get(3)?.unwrap_or_default(),
                }))
            }),
        )
    })
}

/// Sends a signed test event to a subscription's endpoint now and returns the outcome.
// pgrx reads the column names from the written-out return type, so no type alias here.
#[allow(clippy::type_complexity)]
#[pg_extern(name = "_ping", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ping(
    name: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(delivered, bool),
        name!(status_code, Option<i32>),
        name!(duration_ms, f64),
        name!(error, Option<String>),
        name!(response_excerpt, Option<String>),
        name!(webhook_id, String),
    ),
> {
    let sub = find_managed(name, "ping");
    let Some(target) = load(sub.id) else {
        invalid("the subscription's table no longer exists, so there is nothing to ping for")
    };
    let settings = WorkerSettings::read();
    let (endpoint, _) = match crate::delivery::targets::parse(&target.row, settings.default_timeout)
    {
        Ok(config) => config,
        Err(e) => invalid(format!("the subscription cannot be sent to: {e}")),
    };
    let sender = match crate::delivery::build_sender(&settings) {
        Ok(sender) => sender,
        Err(e) => invalid(format!("cannot send: {e}")),
    };
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let webhook_id = format!("msg_{}_ping_{millis}", target.row.uid);
    let format: Format = target.row.format.parse().unwrap_or(Format::Database);
    let envelope = Envelope {
        message_id: &webhook_id,
        time: &target.now,
        database: &target.database,
    };
    let message = Message {
        id: webhook_id.clone(),
        body: ping_body(format, &target.schema, &target.table, &envelope),
        content_type: format.content_type(),
    };
    let runtime = match crate::delivery::new_runtime() {
        Ok(rt) => rt,
        Err(e) => invalid(format!("could not start the async runtime: {e}")),
    };
    let request = sender.send(&endpoint, &message);
    tokio::pin!(request);
    // The request runs in short slices so a cancel (or statement_timeout) stops the wait.
    let attempt = loop {
        let slice =
            runtime.block_on(async { tokio::time::timeout(CANCEL_CHECK, &mut request).await });
        match slice {
            Ok(attempt) => break attempt,
            Err(_) => {
                pg_sys::check_for_interrupts!();
            }
        }
    };
    let delivered = attempt.status.is_some_and(|s| (200..300).contains(&s));
    TableIterator::once((
        delivered,
        attempt.status.map(i32::from),
        attempt.duration.as_secs_f64() * 1000.0,
        attempt.error,
        attempt.response_excerpt,
        webhook_id,
    ))
}
