//! From a finished request to one outcome per event it carried: the retry verdict, the error
//! summary kept on the event, what the receiver said.

use std::time::{Duration, SystemTime};

use pg_webhook_core::http::Attempt;
use pg_webhook_core::retry::{jitter_unit, judge, AttemptKind, Verdict};

use super::Flight;
use crate::queue::{Decision, Outcome, Spent};

/// Longest error summary kept on an event (the full text is on the attempt).
const LAST_ERROR_LEN: usize = 500;

/// One outcome for each event of the request. The events of a batch share one jitter, so
/// those retried come due together and go out in the same batch again.
pub(super) fn settle(flight: Flight, attempt: Result<Attempt, String>) -> Vec<Outcome> {
    let attempt = attempt.unwrap_or_else(|panic| Attempt {
        started_at: SystemTime::now(),
        duration: Duration::ZERO,
        status: None,
        response_excerpt: None,
        response_headers: None,
        error: Some(format!("delivery task failed: {panic}")),
        kind: AttemptKind::TransportError,
    });
    let jitter = jitter_unit();
    let request = flight.events.first().map_or(0, |e| e.event_id);
    flight
        .events
        .iter()
        .map(|event| {
            // A replay starts a new series: the schedule counts attempts within it.
            let in_series = (event.attempt - event.series_start).max(1) as u32;
            let verdict = judge(&flight.policy, in_series, attempt.kind, jitter);
            let decision = match verdict {
                // Named in its transaction's part only, it dies once the part is delivered.
                Verdict::Delivered if event.dies.is_some() => Decision::Dead,
                Verdict::Delivered => Decision::Delivered,
                Verdict::RetryIn(delay) => Decision::Retry {
                    delay_ms: delay.as_millis() as i64,
                },
                Verdict::Dead | Verdict::Spent(_) => Decision::Dead,
            };
            let dies = event.dies.as_ref().filter(|_| decision == Decision::Dead);
            // The summary kept on the event, and the attempt's error, as the event dies
            // (`dies`: named in its part only, why it was not sent) or is retried.
            let errors = |dies: Option<&String>| {
                let last_error = match (decision, attempt.status, &attempt.error) {
                    _ if dies.is_some() => dies.map(|why| truncate(why)),
                    (Decision::Delivered, ..) => None,
                    (_, Some(code), _) => Some(truncate(&match &attempt.response_excerpt {
                        Some(body) => format!("HTTP {code}: {body}"),
                        None => format!("HTTP {code}"),
                    })),
                    (_, None, Some(e)) => Some(truncate(e)),
                    (_, None, None) => Some("no response".to_string()),
                };
                // Why it was not sent, before what became of the part naming it.
                let error = match (dies, &attempt.error) {
                    (Some(why), Some(e)) => Some(format!("{why}; the part naming it: {e}")),
                    (Some(why), None) => Some(why.clone()),
                    (None, e) => e.clone(),
                };
                (last_error, error)
            };
            let (last_error, error) = errors(dies);
            // Whether its series has time left is read before it is recorded (spent.rs). An
            // event named in its transaction's part only goes on with the part too.
            let spent = match verdict {
                Verdict::Spent(retry_after) => Some(Spent {
                    retry_after,
                    first_attempt: event.series_start + 1,
                    extra: in_series.saturating_sub(flight.policy.max_attempts()),
                    policy: flight.policy.clone(),
                    request,
                    jitter_unit: jitter,
                    if_retried: dies.map(|_| errors(None)),
                }),
                _ => None,
            };
            Outcome {
                txid: event.txid,
                event_id: event.event_id,
                subscription_id: flight.subscription_id,
                attempt: event.attempt,
                started_at: attempt.started_at,
                duration_ms: attempt.duration.as_secs_f64() * 1000.0,
                status_code: attempt.status.map(i32::from),
                response_excerpt: attempt.response_excerpt.clone(),
                error,
                decision,
                last_error,
                reached_endpoint: true,
                response_headers: attempt.response_headers.clone(),
                callback: flight.callback,
                batch: flight.batch,
                tid: event.tid,
                spent,
            }
        })
        .collect()
}

pub(super) fn truncate(s: &str) -> String {
    pg_webhook_core::text::clipped(s, LAST_ERROR_LEN)
}
