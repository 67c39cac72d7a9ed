//! How a subscription's events are sent, beyond where: ordered delivery, its own concurrency
//! and rate limits, and the SQL callback run on each result. Checked before anything is stored.

use pg_webhook_core::limits::{MAX_RATE, MIN_RATE};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::error::{invalid, reject, spi};
use crate::privilege::caller;
use crate::sql::first_row;

/// Far above any endpoint's needs, and below what would let one subscription hog a worker.
const MAX_IN_FLIGHT: i32 = 10_000;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Delivery {
    pub ordered: bool,
    pub max_in_flight: Option<i32>,
    pub rate_limit: Option<f64>,
    pub callback: Option<pg_sys::Oid>,
}

pub fn check(
    ordered: Option<bool>,
    max_in_flight: Option<i32>,
    rate_limit: Option<f64>,
    callback: Option<pg_sys::Oid>,
) -> Delivery {
    let ordered = ordered.unwrap_or(false);
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
    }
}

/// A callback is a function of one jsonb argument that the subscriber (its future owner) may
/// execute; it runs with the owner's rights, so nothing more is needed.
fn check_callback(f: pg_sys::Oid) {
    let found = spi(
        "looking up the callback",
        Spi::connect(|client| {
            first_row(
                client,
                "SELECT p.oid::regprocedure::text, p.prokind::text,
                        p.pronargs = 1 AND p.proargtypes[0] = 'pg_catalog.jsonb'::pg_catalog.regtype
                            AND NOT p.proretset,
                        pg_catalog.has_function_privilege($2, p.oid, 'EXECUTE')
                   FROM pg_catalog.pg_proc p WHERE p.oid = $1",
                &[f.into(), caller().into()],
                |row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<bool>(3)?.unwrap_or(false),
                        row.get::<bool>(4)?.unwrap_or(false),
                    ))
                },
            )
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
            format!("permission denied for callback {signature}: the subscription's owner runs it and needs EXECUTE on it"),
            None,
        );
    }
}
