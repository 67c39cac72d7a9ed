//! Recording what happened to each request, and what it says about the subscription's health.
//!
//! Outcomes are recorded in batches, one transaction each. A batch that cannot be recorded is
//! never given up on: its events stay claimed by this worker (so they are not sent again), the
//! worker backs off and tries again, and says so in the log. A value PostgreSQL refuses cannot
//! hold up the others: after a failed batch each outcome is recorded alone, and one that still
//! fails is recorded without what the receiver sent.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pgrx::prelude::*;

use super::{txn, Worker};
use crate::delivery::targets::Target;
use crate::queue::{Decision, Outcome, Statements};
use crate::sql::with_settings;

/// How long a batch waits for a lock before it fails (the session's is 5 s).
const RECORD_LOCK_TIMEOUT: &[(&std::ffi::CStr, &std::ffi::CStr)] = &[(c"lock_timeout", c"50ms")];

/// The longest wait between two tries at recording a batch.
const RECORD_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Worker {
    pub(super) fn record(&mut self) {
        if self.dispatcher.outcomes.is_empty() && !self.dispatcher.holds() {
            return;
        }
        super::backend::report_activity(Some("recording delivery outcomes"));
        if !self.ensure_statements() {
            self.record_failed();
            return;
        }
        // Once a second, outcomes set aside go back with the others, and those whose queue
        // rows are still held are set aside again: all of a subscription's together, so none
        // of them waits behind rows it cannot have. In between, new outcomes of subscriptions
        // set aside join them, unasked (looking each round took a write transaction each).
        let mut was_held = 0;
        if self
            .dispatcher
            .held_due_at()
            .is_some_and(|at| Instant::now() >= at)
        {
            was_held = self.dispatcher.held();
            self.dispatcher.unhold();
            if self.hold_rows_held(false).is_none() {
                self.record_failed();
                return;
            }
        } else if self.dispatcher.holds() {
            self.dispatcher.hold_with_held();
        }
        if self.dispatcher.outcomes.is_empty() {
            // All set aside, or of an extension dropped and made again meanwhile.
            return;
        }
        if !self.decide_spent() {
            self.record_failed();
            return;
        }
        let mut recorded = self.record_batch();
        if recorded.is_err() && self.hold_rows_held(true).is_some_and(|held| held > 0) {
            // Recording waited for rows another transaction holds and timed out: the others
            // are recorded without those.
            recorded = self.record_batch();
        }
        let (health, disabled) = match recorded {
            Ok(Some(recorded)) => recorded,
            Ok(None) => {
                // Their events were the dropped extension's: forgotten, never recorded.
                self.statements = None;
                if self.ensure_statements() {
                    return;
                }
                self.record_failed();
                return;
            }
            Err(_) => match &self.statements {
                Some(statements) if record_one_by_one(statements, &self.dispatcher.outcomes) => {
                    (Vec::new(), Vec::new())
                }
                _ => {
                    self.record_failed();
                    return;
                }
            },
        };
        self.recorded(&health, &disabled);
        if was_held > 0 && !self.dispatcher.holds() {
            log!(
                "pg_webhook worker: recorded the {was_held} outcomes set aside: no other transaction holds their rows any more"
            );
        }
    }

    /// Records the current outcomes, with the health they tell of, in one transaction: the
    /// health changes and the subscriptions disabled, or `None` when their extension was
    /// dropped and made again meanwhile.
    fn record_batch(&self) -> Result<Option<Recorded>, String> {
        let Some(statements) = &self.statements else {
            return Err("the worker's statements are not prepared".to_string());
        };
        let outcomes = &self.dispatcher.outcomes;
        let (health, gone) = health_changes(outcomes, &self.targets);
        // Subscription rows before queue rows, the order unsubscribe, pause and resume take
        // them in: the other way round, an unsubscribe discarding the queue while this
        // transaction waited for the subscription's row deadlocked with it.
        txn::run("recording delivery outcomes", || {
            if !txn::same_extension(statements.extension) {
                return Ok(None);
            }
            // A row another transaction holds (an unsubscribe discarding the queue, left open)
            // fails the batch at once rather than after the session's lock_timeout, all that
            // time holding up every subscription's claims and outcomes; the worker then sets
            // its subscription's outcomes aside and records the rest.
            with_settings(RECORD_LOCK_TIMEOUT, move || {
                statements.health(&health)?;
                let mut disabled = Vec::new();
                for (id, reason) in &gone {
                    if statements.disable(*id, reason, false)? {
                        disabled.push((*id, reason.clone()));
                    }
                }
                statements.record(outcomes)?;
                statements.batches_done(&batches_of(outcomes))?;
                Ok(Some((health, disabled)))
            })
        })
    }

    /// Sets aside the outcomes of the subscriptions of which another transaction holds some
    /// queue rows of these events (see sql/worker/rows_held.sql); how many it set aside, or
    /// `None` if it could not tell. `found` says so in the log: recording just failed on them.
    fn hold_rows_held(&mut self, found: bool) -> Option<usize> {
        let statements = self.statements.as_ref()?;
        let outcomes = &self.dispatcher.outcomes;
        let held = txn::run("looking for queue rows other transactions hold", || {
            if !txn::same_extension(statements.extension) {
                return Ok(HashSet::new());
            }
            statements.subscriptions_held(outcomes)
        })
        .ok()?;
        let before = self.dispatcher.held();
        self.dispatcher.hold(&held);
        let set_aside = self.dispatcher.held() - before;
        if found && set_aside > 0 {
            warning!(
                "pg_webhook worker: another transaction holds queue rows of subscriptions {held:?} (an unsubscribe discarding the queue, left open?); the outcomes of their {set_aside} events wait until it ends, the others are recorded"
            );
        }
        Some(set_aside)
    }

    /// After the current outcomes were recorded.
    fn recorded(&mut self, health: &[(i32, bool)], disabled: &[(i32, String)]) {
        let outcomes = &self.dispatcher.outcomes;
        let rescheduled = outcomes
            .iter()
            .any(|o| matches!(o.decision, Decision::Retry { .. }));
        let callbacks = outcomes
            .iter()
            .any(|o| o.callback && !matches!(o.decision, Decision::Retry { .. }));
        // The next event of an ordered subscription, or a transaction's next part, waits for
        // this record: claim right after.
        let ordered = outcomes.iter().any(|o| {
            self.targets
                .get(&o.subscription_id)
                .is_some_and(|t| t.ordered || t.grouped)
        });
        if self.record_failures > 0 {
            log!(
                "pg_webhook worker: recorded {} outcomes after {} failed tries",
                outcomes.len(),
                self.record_failures
            );
        }
        self.record_failures = 0;
        self.record_retry_at = None;
        self.dispatcher.release_recorded();
        for (id, failing) in health {
            if let Some(t) = self.targets.get_mut(id) {
                t.failing = *failing;
            }
        }
        for (id, reason) in disabled {
            log!("pg_webhook: subscription {id} disabled: {reason}");
            self.targets_loaded = None;
        }
        if rescheduled || std::mem::take(&mut self.due_held) {
            self.claim_wanted = true;
            // Find out when the earliest retry is due; or read again the due events left
            // because their subscription held its share: requests ended, and without this
            // they waited the second the claim put off (a backlog of retries, or of a resumed
            // subscription, went at three quarters of max_in_flight a second).
            self.scheduled_due_at = Some(Instant::now());
        }
        let passed_waiting = self
            .lagging
            .keys()
            .any(|id| self.targets.get(id).is_none_or(|t| t.sends()));
        if ordered || std::mem::take(&mut self.share_waiting) || passed_waiting {
            // Requests ended that an ordered key, a subscription holding its share or passed
            // events wait for.
            self.claim_wanted = true;
        }
        if callbacks {
            // SAFETY: reads a backend global.
            crate::wake::wake_callback_runner(unsafe { pg_sys::MyDatabaseId });
        }
    }

    /// Keeps the outcomes (and their events claimed) and tries again later, less and less
    /// often. Sending them again instead would turn a database that refuses writes into a
    /// flood of duplicates.
    fn record_failed(&mut self) {
        self.record_failures += 1;
        self.statements = None;
        let backoff = Duration::from_millis(100)
            .saturating_mul(1 << self.record_failures.min(10))
            .min(RECORD_BACKOFF_MAX);
        self.record_retry_at = Some(Instant::now() + backoff);
        if self.record_failures == 1 || self.record_failures.is_multiple_of(10) {
            warning!(
                "pg_webhook worker: could not record the outcomes of {} requests ({} tries so far); their events stay claimed and are not sent again meanwhile; next try in {} ms",
                self.dispatcher.outcomes.len(),
                self.record_failures,
                backoff.as_millis()
            );
        }
    }
}

/// After a batch failed: each outcome in a transaction of its own (an event whose id is
/// archived already leaves the queue, see sql/worker/finish.sql), and one that still fails
/// without the response it carries (its excerpt and headers), so that nothing a receiver sends
/// can keep the others from being recorded. False when even that fails: the cause is not the
/// outcomes (the database refuses writes, the extension is gone…), and the caller backs off.
fn record_one_by_one(statements: &Statements, outcomes: &[Outcome]) -> bool {
    for outcome in outcomes {
        // False when the extension was made again meanwhile: nothing of these is recorded.
        let record = |o: &Outcome| {
            if !txn::same_extension(statements.extension) {
                return Ok(false);
            }
            statements
                .record_over_archived(std::slice::from_ref(o))
                .map(|()| true)
        };
        let why = match txn::run("recording one outcome", || record(outcome)) {
            Ok(true) => continue,
            Ok(false) => return false,
            Err(why) => why,
        };
        let bare = outcome.without_response(&why);
        if !matches!(
            txn::run("recording one outcome without its response", || record(
                &bare
            )),
            Ok(true)
        ) {
            return false;
        }
    }
    // The batches once all their events are recorded. Should this fail (logged by txn::run),
    // their rows stay behind harmlessly: a worker taking over finds none of their events new,
    // and puts none back.
    let batches = batches_of(outcomes);
    let forgotten = txn::run("forgetting recorded batches", || {
        statements.batches_done(&batches)
    });
    if forgotten.is_err() {
        log!(
            "pg_webhook worker: {} recorded batches stay written down",
            batches.len()
        );
    }
    true
}

/// The batches (subscription, batch) the outcomes are of.
fn batches_of(outcomes: &[Outcome]) -> Vec<(i32, i64)> {
    let mut batches: Vec<(i32, i64)> = outcomes
        .iter()
        .filter_map(|o| Some((o.subscription_id, o.batch?)))
        .collect();
    batches.sort_unstable();
    batches.dedup();
    batches
}

/// What a batch recorded: the health changes it wrote and the subscriptions it disabled.
type Recorded = (Vec<(i32, bool)>, Vec<(i32, String)>);

/// Health changes (subscription id, now failing), and subscriptions whose endpoint answered
/// 410 Gone, which the Standard Webhooks spec says to stop sending to (id, reason).
type Health = (Vec<(i32, bool)>, Vec<(i32, String)>);

fn health_changes(outcomes: &[Outcome], targets: &HashMap<i32, Target>) -> Health {
    let mut state: HashMap<i32, bool> = HashMap::new();
    let mut gone: Vec<(i32, String)> = Vec::new();
    for o in outcomes.iter().filter(|o| o.reached_endpoint) {
        // An event named dead in a transaction's part that was delivered died, but the
        // endpoint answered 2xx: healthy.
        let answered_ok = o.status_code.is_some_and(|c| (200..300).contains(&c));
        let failing = !matches!(o.decision, Decision::Delivered) && !answered_ok;
        // One success in the batch is enough to call the endpoint healthy.
        let entry = state.entry(o.subscription_id).or_insert(failing);
        *entry = *entry && failing;
        if o.status_code == Some(410) && !gone.iter().any(|(id, _)| *id == o.subscription_id) {
            gone.push((
                o.subscription_id,
                "endpoint answered 410 Gone; webhook.resume() re-enables it".to_string(),
            ));
        }
    }
    let changes = state
        .into_iter()
        .filter(|(id, failing)| targets.get(id).is_some_and(|t| t.failing != *failing))
        .collect();
    (changes, gone)
}
