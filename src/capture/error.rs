//! The capture trigger's errors, each raised with a SQLSTATE that says what kind it is.

use std::fmt;

use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
use pgrx::prelude::*;

#[derive(Debug)]
pub enum CaptureError {
    Trigger(pgrx::trigger_support::PgTriggerError),
    BadArguments(Vec<String>),
    WrongKind {
        expected: &'static str,
        got: String,
    },
    NotOurs {
        trigger: String,
        table: String,
        subscription: i32,
    },
    /// The subscription the trigger names does not exist (a restore that lost
    /// webhook._subscriptions, or a trigger made by hand): capturing nothing would lose the
    /// change silently, so the statement fails and says how to fix it.
    Unknown {
        trigger: String,
        table: String,
        subscription: i32,
    },
    Queue(String),
    /// An UPDATE moved rows into a partition whose BEFORE INSERT trigger skipped them: the
    /// transition tables hold `unpaired` more old rows than new ones, and nothing says which
    /// old row goes with which new one.
    UnpairedMoves {
        table: String,
        unpaired: i64,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Trigger(e) => write!(f, "pg_webhook capture trigger: {e}"),
            CaptureError::BadArguments(a) => write!(
                f,
                "pg_webhook capture trigger: expected a subscription id as its argument, got {a:?}; create subscriptions with webhook.subscribe()"
            ),
            CaptureError::WrongKind { expected, got } => write!(
                f,
                "pg_webhook trigger must be {expected}, not {got}; create subscriptions with webhook.subscribe()"
            ),
            CaptureError::NotOurs {
                trigger,
                table,
                subscription,
            } => write!(
                f,
                "pg_webhook: trigger \"{trigger}\" on {table} names subscription {subscription}, which watches another table; only webhook.subscribe() creates capture triggers (drop this one)"
            ),
            CaptureError::Unknown {
                trigger,
                table,
                subscription,
            } => write!(
                f,
                "pg_webhook: trigger \"{trigger}\" on {table} names subscription {subscription}, which does not exist, so this change cannot be captured; drop the trigger (DROP TRIGGER \"{trigger}\" ON {table}) or restore webhook._subscriptions"
            ),
            CaptureError::Queue(e) => write!(f, "pg_webhook could not queue the events: {e}"),
            CaptureError::UnpairedMoves { table, unpaired } => write!(
                f,
                "pg_webhook: this UPDATE moved {unpaired} row(s) of {table} into a partition whose BEFORE INSERT trigger skipped them (returned NULL): PostgreSQL then shows the capture trigger their old rows without new ones, so which old row goes with which new one cannot be told, and the statement fails"
            ),
        }
    }
}

impl CaptureError {
    /// Raises the error as an ERROR with a SQLSTATE that says what kind it is.
    pub(super) fn raise(&self) -> ! {
        use pgrx::PgSqlErrorCode::*;
        let code = match self {
            CaptureError::NotOurs { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            CaptureError::Unknown { .. } => ERRCODE_UNDEFINED_OBJECT,
            CaptureError::BadArguments(_) | CaptureError::WrongKind { .. } => {
                ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED
            }
            CaptureError::Trigger(_) | CaptureError::Queue(_) => ERRCODE_INTERNAL_ERROR,
            CaptureError::UnpairedMoves { .. } => ERRCODE_FEATURE_NOT_SUPPORTED,
        };
        let hint = match self {
            CaptureError::UnpairedMoves { .. } => Some(
                "Have the partition's BEFORE INSERT trigger raise an error for rows it refuses \
                 instead of skipping them, or DELETE such rows rather than move them.",
            ),
            _ => None,
        };
        crate::error::reject(code, self.to_string(), hint)
    }
}

impl From<pgrx::trigger_support::PgTriggerError> for CaptureError {
    fn from(e: pgrx::trigger_support::PgTriggerError) -> Self {
        CaptureError::Trigger(e)
    }
}

/// Runs `f`; an ERROR it raises is raised again with `pg_webhook subscription "<name>": ` in
/// front of its message (same SQLSTATE, detail and hint), so the writer whose statement fails
/// learns which subscription's capture failed (its filter or payload, or a value it cannot
/// render), and whom to ask. The transaction (or
/// the writer's savepoint) aborts as with the original error, which undoes the owner's identity
/// and settings.
pub(super) fn naming_subscription<R>(name: &str, f: impl FnOnce() -> R) -> R {
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_others(|caught| match caught {
            CaughtError::PostgresError(e) | CaughtError::ErrorReport(e) => raise_again(
                &e,
                format!("pg_webhook subscription \"{name}\": {}", e.message()),
                e.hint().map(String::from),
            ),
            other => other.rethrow(),
        })
        .execute()
}

/// Raises `e` again, with its SQLSTATE and detail, under `message` and `hint`.
pub(super) fn raise_again(e: &ErrorReportWithLevel, message: String, hint: Option<String>) -> ! {
    let mut report = ErrorReport::new(e.sql_error_code(), message, "pg_webhook capture");
    if let Some(detail) = e.detail() {
        report = report.set_detail(detail);
    }
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR does not return")
}
