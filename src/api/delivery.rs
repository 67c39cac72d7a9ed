//! How a subscription's events are sent, beyond where: ordered delivery, its own concurrency
//! and rate limits, batches, and the SQL callback run on each result. Checked before anything
//! is stored.

use pg_webhook_core::limits::{MAX_RATE, MIN_RATE};
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode;

use crate::error::{invalid, reject, spi};
use crate::privilege::caller;
use crate::sql::first_row;

const CALLBACK: &str = include_str!("../../sql/queries/callback_function.sql");

/// Far above any endpoint's needs, and below what would let one subscription hog a worker.
const MAX_IN_FLIGHT: i32 = 10_000;
/// The largest `batch_size`.
pub const MAX_BATCH: i32 = 1_000;
/// The longest `batch_wait`, in milliseconds.
pub const MAX_BATCH_WAIT_MS: i64 = 60_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    pub ordered: bool,
    pub max_in_flight: Option<i32>,
    pub rate_limit: Option<f64>,
    pub callback: Option<pg_sys::Oid>,
    pub batching: Batching,
    /// Columns ordering events per key (checked against the table by `order_key::check`).
    pub order_key: Option<Vec<String>>,
    /// `Some("transaction")`: one request per committed transaction.
    pub group_by: Option<String>,
}

/// Events per request, and how long to wait for a batch to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub size: i32,
    pub wait_ms: i64,
}

impl Default for Batching {
    fn default() -> Batching {
        Batching {
            size: 1,
            wait_ms: 0,
        }
    }
}

impl Delivery {
    /// The settings of 0.2.0, stored apart from the newer ones.
    pub fn has_own_limits(&self) -> bool {
        self.ordered
            || self.max_in_flight.is_some()
            || self.rate_limit.is_some()
            || self.callback.is_some()
    }
}

/// The settings `webhook.subscribe()` passes in its `options` object (those added since
/// 0.3.0): `batch_size`, `batch_wait_ms`, `order_key` and `group_by`.
fn check_options(options: Option<JsonB>) -> (Batching, Option<Vec<String>>, Option<String>) {
    let mut batching = Batching::default();
    let mut order_key = None;
    let mut group_by = None;
    let Some(JsonB(value)) = options else {
        return (batching, order_key, group_by);
    };
    let Some(fields) = value.as_object() else {
        invalid("subscribe options must be a JSON object");
    };
    for (key, v) in fields {
        match key.as_str() {
            "batch_size" => {
                let n = v.as_i64().filter(|n| (1..=MAX_BATCH as i64).contains(n));
                batching.size = n.map_or_else(
                    || {
                        invalid(format!(
                            "batch_size of {v} is out of range: give 1 (one event per request, the default) to {MAX_BATCH}"
                        ))
                    },
                    |n| n as i32,
                );
            }
            "batch_wait_ms" => {
                batching.wait_ms = v
                    .as_i64()
                    .filter(|ms| (0..=MAX_BATCH_WAIT_MS).contains(ms))
                    .unwrap_or_else(|| {
                        invalid(format!(
                            "batch_wait of {v} ms is out of range: give 0 (send at once, the default) to 1 minute"
                        ))
                    });
            }
            "order_key" => {
                let names: Option<Vec<String>> = v.as_array().and_then(|a| {
                    a.iter()
                        .map(|n| n.as_str().map(str::to_string))
                        .collect()
                });
                order_key = Some(names.unwrap_or_else(|| {
                    invalid("order_key must be an array of column names, without NULLs")
                }));
            }
            "group_by" => match v.as_str().map(|g| g.trim().to_ascii_lowercase()) {
                Some(g) if g == "transaction" => group_by = Some(g),
                _ => invalid(format!(
                    "group_by of {} is not known: give 'transaction' (one request per committed transaction), or leave it NULL",
                    crate::error::shown(&v.to_string())
                )),
            },
            other => invalid(format!(
                "unknown subscribe option \"{}\": pass webhook.subscribe()'s named arguments instead",
                crate::error::shown(other)
            )),
        }
    }
    (batching, order_key, group_by)
}

pub fn check(
    ordered: Option<bool>,
    max_in_flight: Option<i32>,
    rate_limit: Option<f64>,
    callback: Option<pg_sys::Oid>,
    options: Option<JsonB>,
) -> Delivery {
    let ordered = ordered.unwrap_or(false);
    let (batching, order_key, group_by) = check_options(options);
    if group_by.is_some() {
        let clash = [
            (ordered, "ordered"),
            (order_key.is_some(), "order_key"),
            (batching != Batching::default(), "batch_size or batch_wait"),
        ];
        if let Some((_, name)) = clash.iter().find(|(set, _)| *set) {
            invalid(format!(
                "group_by => 'transaction' sends each transaction as one request (its own batch, its events in order): leave {name} out"
            ));
        }
    }
    if ordered && batching.size > 1 {
        invalid("ordered delivery sends one event at a time: leave batch_size at 1");
    }
    if order_key.is_some() && ordered {
        invalid("ordered => true orders the whole subscription as one key: give either ordered or order_key, not both");
    }
    if order_key.is_some() && batching.size > 1 {
        invalid("order_key sends one event of each key at a time: leave batch_size at 1");
    }
    if batching.size == 1 && batching.wait_ms > 0 {
        invalid(
            "batch_wait only applies to batches: give batch_size above 1, or leave batch_wait at 0",
        );
    }
    if let Some(n) = max_in_flight {
        if !(1..=MAX_IN_FLIGHT).contains(&n) {
            invalid(format!(
                "max_in_flight of {n} is out of range: give 1 to {MAX_IN_FLIGHT}, or NULL for the worker's limit"
            ));
        }
        if ordered && n > 1 {
            invalid("ordered delivery sends one event at a time: leave max_in_flight NULL (or 1)");
        }
    }
    if let Some(r) = rate_limit {
        // NaN, infinities, denormals and zero all fail this.
        if !(MIN_RATE..=MAX_RATE).contains(&r) {
            // 1e-300 printed in full would be three hundred digits long.
            let shown = if r.is_finite() && r != 0.0 && !(1e-4..1e15).contains(&r.abs()) {
                format!("{r:e}")
            } else {
                r.to_string()
            };
            invalid(format!(
                "rate_limit of {shown} events per second is out of range: give {MIN_RATE} (one event every 1000 seconds) to {MAX_RATE}, or NULL for none"
            ));
        }
    }
    if let Some(f) = callback {
        check_callback(f);
    }
    Delivery {
        ordered,
        max_in_flight,
        rate_limit,
        callback,
        batching,
        order_key,
        group_by,
    }
}

/// A callback is a function of one jsonb argument that the subscriber (its future owner) may
/// call: EXECUTE on it and USAGE on its schema; it runs with the owner's rights, so nothing
/// more is needed.
pub(super) fn check_callback(f: pg_sys::Oid) {
    let found = spi(
        "looking up the callback",
        Spi::connect(|client| {
            first_row(client, CALLBACK, &[f.into(), caller().into()], |row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<bool>(3)?.unwrap_or(false),
                    row.get::<bool>(4)?.unwrap_or(false),
                ))
            })
        }),
    );
    let Some((signature, kind, takes_jsonb, may_execute)) = found else {
        invalid(format!("callback function with oid {f} does not exist"))
    };
    if kind != "f" || !takes_jsonb {
        invalid(format!(
            "callback {signature} must be a function taking one jsonb argument (the event and its outcome) and returning one value, such as CREATE FUNCTION on_result(event jsonb) RETURNS void"
        ));
    }
    if !may_execute {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for callback {signature}: the subscription's owner runs it and needs EXECUTE on it and USAGE on its schema"),
            None,
        );
    }
}
