//! Events whose schedule's attempts are spent while their receiver still asks to be tried again
//! (`Retry-After`): before they are recorded, each is given one more attempt at its schedule's
//! next point if its series began less than the schedule's span ago
//! (`retry::past_the_count`), and recorded dead otherwise.

use std::collections::HashMap;
use std::time::Duration;

use pg_webhook_core::retry::past_the_count;

use super::{txn, Worker};
use crate::queue::{series_ages, Decision};

impl Worker {
    /// Decides the spent events among the outcomes to record. False when their series could
    /// not be read: the outcomes stay as they are, to be tried again with the others.
    pub(super) fn decide_spent(&mut self) -> bool {
        let outcomes = &mut self.dispatcher.outcomes;
        let asked: Vec<(i64, i32)> = outcomes
            .iter()
            .filter_map(|o| Some((o.event_id, o.spent.as_ref()?.first_attempt)))
            .collect();
        if asked.is_empty() {
            return true;
        }
        let Ok(ages) = txn::run("reading when spent series began", || series_ages(&asked)) else {
            return false;
        };
        // The events of one request (a batch, a transaction's part) go on or die together, as
        // the oldest series among them: a batch's webhook-id names them all, and a part
        // without one of them would tell its receiver of an event that never comes.
        let mut request_age: HashMap<(i32, i64), Duration> = HashMap::new();
        for o in outcomes.iter() {
            if let (Some(spent), Some(age)) = (&o.spent, ages.get(&o.event_id)) {
                let oldest = request_age
                    .entry((o.subscription_id, spent.request))
                    .or_default();
                *oldest = (*oldest).max(*age);
            }
        }
        for o in outcomes.iter_mut() {
            let Some(spent) = o.spent.take() else {
                continue;
            };
            // A series whose first attempt is not logged has no known age: it ends.
            let wait = (request_age.get(&(o.subscription_id, spent.request))).and_then(|age| {
                past_the_count(
                    &spent.policy,
                    *age,
                    spent.extra,
                    spent.retry_after,
                    spent.jitter_unit,
                )
            });
            if let Some(wait) = wait {
                o.decision = Decision::Retry {
                    delay_ms: wait.as_millis() as i64,
                };
                if let Some((last_error, error)) = spent.if_retried {
                    (o.last_error, o.error) = (last_error, error);
                }
            }
        }
        true
    }
}
