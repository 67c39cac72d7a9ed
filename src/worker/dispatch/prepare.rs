//! What an event's body is, alone, and where and how it goes; or why it cannot be sent.

use std::sync::Arc;
use std::time::Duration;

use pg_webhook_core::http::Endpoint;
use pg_webhook_core::payload::{self, message_id, Envelope, Operation, RowChange};
use pg_webhook_core::retry::RetryPolicy;
use pg_webhook_core::Bytes;

use super::Dispatcher;
use crate::delivery::targets::Target;
use crate::queue::{Decision, QueuedEvent};

/// Why an event cannot be sent and what becomes of it; `code` is the short reason a
/// transaction's part names it with when it dies (see `batch::dead_note`).
pub(super) struct Unsent {
    pub error: String,
    pub decision: Decision,
    pub code: &'static str,
}

/// An event's body alone, with where and how it goes, and its subscription.
type Prepared<'t> = (Bytes, Arc<Endpoint>, Arc<RetryPolicy>, &'t Target);

impl Dispatcher {
    /// The body `event` would be sent with alone, with where and how it is sent; or why it
    /// cannot be sent and what becomes of it.
    pub(super) fn prepare<'t>(
        &self,
        event: &QueuedEvent,
        target: Option<&'t Target>,
    ) -> Result<Prepared<'t>, Unsent> {
        let dead = |error: String, code| Unsent {
            error,
            decision: Decision::Dead,
            code,
        };
        let Some(target) = target else {
            let e = format!("subscription {} no longer exists", event.subscription_id);
            return Err(dead(e, "subscription_gone"));
        };
        let (endpoint, policy) = match &target.config {
            Ok(config) => config,
            Err(e) => {
                // Fixable by the DBA, so retried on the default schedule rather than killed.
                let delay = RetryPolicy::default()
                    .base_delay((event.attempts + 1).max(1) as u32)
                    .unwrap_or(Duration::from_secs(3600));
                let delay_ms = delay.as_millis() as i64;
                return Err(Unsent {
                    error: e.clone(),
                    decision: Decision::Retry { delay_ms },
                    code: "",
                });
            }
        };
        if event.payload_bytes > self.largest_readable() {
            // Past what any worker reads, raising the setting and replaying cannot send it.
            let why = match event.payload_bytes > payload::LARGEST_READABLE_IMAGES as i64 {
                true => format!("over the {} bytes any worker reads, whatever pg_webhook.max_payload_bytes says (a replay cannot send it)", payload::LARGEST_READABLE_IMAGES),
                false => format!("within pg_webhook.max_payload_bytes ({})", self.max_payload_bytes),
            };
            let e = format!(
                "the event's row images are {} bytes, too large to send {why} and left unread",
                event.payload_bytes
            );
            return Err(dead(e, "too_large"));
        }
        let op = Operation::from_queue(&event.op).map_err(|e| {
            dead(
                format!("event has an unknown operation: {e}"),
                "unknown_operation",
            )
        })?;
        let id = message_id(&target.uid, event.id, event.timeline);
        let change = RowChange {
            op,
            schema: &event.table_schema,
            table: &event.table_name,
            record: event.record.as_deref(),
            old_record: event.old_record.as_deref(),
        };
        let envelope = Envelope {
            message_id: &id,
            time: &event.created_at,
            database: &self.database,
        };
        let body = payload::body(target.format, &change, &envelope);
        if body.len() > self.max_payload_bytes {
            let e = format!(
                "payload is {} bytes, over pg_webhook.max_payload_bytes ({}): raise the limit and replay the event",
                body.len(),
                self.max_payload_bytes
            );
            return Err(dead(e, "too_large"));
        }
        Ok((body, endpoint.clone(), policy.clone(), target))
    }
}
