//! Deciding what to send next: one transaction that reads new events (through the cursor),
//! retries that are due and the heads of ordered subscriptions, holds back what may not go yet
//! (paused subscriptions, owners who may no longer read the table, per-subscription limits) and
//! hands the rest to the dispatcher.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pg_webhook_core::limits::Limits;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

mod access;
mod others;

use super::dispatch::Dispatcher;
use super::plan::{requests_for, Plan};
use super::{txn, Worker, IN_FLIGHT_BYTES};
use crate::delivery::targets::Target;
use crate::queue::{Bounds, QueuedEvent, Statements};

/// Under a stream of commits, claims are at least this far apart, so each claim (one
/// transaction) picks up several events instead of one. A commit after a quiet spell is
/// claimed at once.
const CLAIM_SPACING: Duration = Duration::from_millis(1);
/// While a backlog lasts, the queue's statistics are checked this often (see `vacuum`), and
/// when one begins.
const STATS_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a claim transaction found.
struct Claimed {
    fresh: Vec<QueuedEvent>,
    scheduled: Vec<QueuedEvent>,
    /// `Some` when retries were looked for and fewer than asked came back: when the next is due.
    next_due: Option<Option<f64>>,
    start: Vec<QueuedEvent>,
    deferred_until: Option<Instant>,
    /// Subscriptions this claim disabled (id, reason), for the log.
    disabled: Vec<(String, String)>,
    /// Parts of transactions to send (subscriptions grouped by transaction).
    parts: Vec<super::grouped::ReadyPart>,
    /// The first new event left for want of room (see `Plan::first_left`).
    first_left: Option<(i64, i64)>,
    /// How many events a request of what this claim started could carry (`None`: none started).
    events_per_request: Option<f64>,
}

/// Where the cursor may move to: the last new event read, or, when room ran out, the last one
/// before the first left behind (`None`: stay), so that one is read again.
fn read_up_to(claimed: &Claimed) -> Option<(i64, i64)> {
    let mut keys = claimed.fresh.iter().map(|e| (e.txid, e.id));
    match claimed.first_left {
        Some(left) => keys.take_while(|k| *k != left).last(),
        None => keys.next_back(),
    }
}

impl Worker {
    /// When the next claim may run: now for a backlog being paged through, else spaced.
    pub(super) fn claim_at(&self) -> Option<Instant> {
        if self.room() == 0 {
            return None;
        }
        if self.paging {
            return Some(self.last_claim);
        }
        let spaced = self.last_claim + CLAIM_SPACING;
        Some(if self.claim_wanted {
            spaced.min(self.next_poll)
        } else {
            self.next_poll
        })
    }

    pub(super) fn claim(&mut self) {
        let now = Instant::now();
        let polling = now >= self.next_poll;
        self.next_poll = now + self.settings.poll_interval;
        self.claim_wanted = false;
        let was_paging = std::mem::replace(&mut self.paging, false);
        self.last_claim = now;
        let room = self.room();
        if room == 0 {
            // Full: claim again as soon as something finishes.
            self.claim_wanted = true;
            return;
        }
        if !self.ensure_statements() {
            return;
        }
        super::backend::report_activity(Some("claiming due events"));
        // Events to read: enough to fill the free requests, with as many events per request as
        // the requests the last claim started could carry (a batched subscription's carry a
        // batch; other subscriptions' one event each, and reading more of those than there is
        // room for would be wasted), within the claim size.
        let widest = self
            .targets
            .values()
            .filter(|t| t.batched() && t.sends())
            .map(|t| t.batch_size)
            .max()
            .unwrap_or(1);
        let per_request = self.events_per_request.clamp(1.0, widest as f64);
        let want =
            ((room as f64 * per_request).ceil() as usize).clamp(1, self.settings.batch_size.max(1));
        // Retries are looked for only when one may be due: skipping the query otherwise keeps
        // a claim to one statement under a stream of new events.
        let check_scheduled = polling || self.scheduled_due_at.is_some_and(|t| now >= t);
        let claimed = {
            let Some(statements) = &self.statements else {
                return;
            };
            let mut claim = Claim {
                statements,
                dispatcher: &self.dispatcher,
                limits: &mut self.limits,
                targets: &mut self.targets,
                sending: &mut self.sending,
                catalog_generation: &mut self.catalog_generation,
                targets_epoch: &mut self.targets_epoch,
                cursor: &mut self.cursor,
                batch_holds: &mut self.batch_holds,
                share: self.share,
                default_timeout: self.settings.default_timeout,
                now,
                reloaded: false,
            };
            let stale = self.targets_loaded.is_none_or(|t| {
                now.duration_since(t) >= self.settings.poll_interval.min(Duration::from_secs(1))
            });
            let result = txn::run("claiming due events", || {
                if !txn::same_extension(statements.extension) {
                    return Ok(None);
                }
                claim.run(stale, want, room, check_scheduled).map(Some)
            });
            result.map(|c| c.map(|c| (c, claim.reloaded)))
        };
        let (claimed, reloaded) = match claimed {
            Ok(Some(found)) => found,
            Ok(None) => {
                // Made again since: the next claim prepares the statements again, and forgets
                // the old extension's events first (ensure_statements).
                self.statements = None;
                self.claim_wanted = true;
                return;
            }
            Err(_) => {
                self.statements = None;
                return;
            }
        };
        if !claimed.start.is_empty() || !claimed.parts.is_empty() {
            // Nothing goes out before the synchronous standbys have it (see replicated.rs).
            super::replicated::wait_for_synchronous_standbys(super::replicated::flushed_lsn());
        }
        self.apply(claimed, reloaded, want, check_scheduled, was_paging, now);
    }

    /// Starts what the claim chose and works out when to look again.
    fn apply(
        &mut self,
        claimed: Claimed,
        reloaded: bool,
        want: usize,
        check_scheduled: bool,
        was_paging: bool,
        now: Instant,
    ) {
        for (name, reason) in &claimed.disabled {
            log!("pg_webhook: subscription \"{name}\" disabled: {reason}");
        }
        if reloaded {
            self.targets_loaded = Some(now);
            let targets = &self.targets;
            self.limits
                .retain(|id| targets.get(&id).is_some_and(|t| t.pinned()));
        }
        // A full page means a backlog; so does one the byte budget cut short.
        let cut_short = claimed
            .fresh
            .first()
            .is_some_and(|e| e.page > claimed.fresh.len() as i64);
        let full_by_count = claimed.fresh.len() == want;
        let full_page = full_by_count || cut_short || claimed.first_left.is_some();
        self.cursor.page_read(read_up_to(&claimed), !full_page);
        if check_scheduled {
            let room_left = want - claimed.fresh.len().min(want);
            self.scheduled_due_at = match claimed.next_due {
                // The page was full, or room ran out: more retries may be due now.
                None if room_left == 0 || !claimed.scheduled.is_empty() => Some(now),
                None => self.scheduled_due_at,
                Some(None) => None,
                Some(Some(ms)) => Some(now + Duration::from_millis(ms.max(0.0) as u64)),
            };
        }
        if let Some(at) = claimed.deferred_until {
            // Deferred events and rate-held heads: look again when the first is due.
            self.scheduled_due_at = Some(self.scheduled_due_at.map_or(at, |t| t.min(at)));
        }
        if let Some(per_request) = claimed.events_per_request {
            self.events_per_request = per_request;
        }
        self.start_claimed(claimed.start);
        for ready in claimed.parts {
            // Not if this very claim found its owner may no longer read the table.
            if let Some(target) = self
                .targets
                .get(&ready.subscription_id)
                .filter(|t| t.sends())
            {
                self.dispatcher
                    .start_part(&self.runtime, ready.part.events, target, ready.tx);
            }
        }
        // (Once a second while paging: the check is a transaction of its own.)
        if full_by_count && (!was_paging || now >= self.next_stats_check) {
            // A backlog (new, or going on): make sure the planner knows the queue is not empty.
            self.next_stats_check = now + STATS_CHECK_EVERY;
            if super::vacuum::refresh_queue_stats(claimed.fresh.len()) {
                log!("pg_webhook worker: analyzed webhook._event_queue, whose statistics said it was nearly empty");
            }
        }
        // A full page means a backlog: keep paging without spacing.
        self.paging = full_page;
        self.claim_wanted = full_page;
        if let Some(at) = self.scheduled_due_at {
            self.next_poll = self.next_poll.min(at.max(now + Duration::from_millis(1)));
        }
    }
}

impl Worker {
    /// Hands what a claim chose to the dispatcher: the events of batched subscriptions
    /// together, each subscription's in the order claimed; the others one by one.
    fn start_claimed(&mut self, events: Vec<QueuedEvent>) {
        let mut batched: Vec<(i32, Vec<QueuedEvent>)> = Vec::new();
        for event in events {
            let sub = event.subscription_id;
            match self.targets.get(&sub) {
                Some(t) if t.batched() => match batched.iter_mut().find(|(id, _)| *id == sub) {
                    Some((_, list)) => list.push(event),
                    None => batched.push((sub, vec![event])),
                },
                target => self.dispatcher.start(&self.runtime, event, target),
            }
        }
        for (sub, events) in batched {
            if let Some(target) = self.targets.get(&sub) {
                self.dispatcher.start_batched(&self.runtime, events, target);
            }
        }
    }
}

/// One claim transaction's view of the worker.
struct Claim<'a> {
    statements: &'a Statements,
    dispatcher: &'a Dispatcher,
    limits: &'a mut Limits,
    targets: &'a mut HashMap<i32, Target>,
    sending: &'a mut HashSet<i32>,
    catalog_generation: &'a mut u64,
    /// The subscription-change epoch (wake.rs) the targets were loaded at.
    targets_epoch: &'a mut u64,
    cursor: &'a mut super::cursor::Cursor,
    /// When each batched subscription's wait for a partial batch ends (see `Plan`).
    batch_holds: &'a mut HashMap<i32, i64>,
    share: crate::queue::Share,
    default_timeout: Duration,
    now: Instant,
    reloaded: bool,
}

impl Claim<'_> {
    /// Reads up to `want` events for up to `room` requests, and decides what starts.
    fn run(
        &mut self,
        stale: bool,
        want: usize,
        room: usize,
        check_scheduled: bool,
    ) -> SpiResult<Claimed> {
        let statements = self.statements;
        let mut disabled = Vec::new();
        // Invalidations were taken in when this transaction started: a GRANT or REVOKE that
        // committed before it is seen here.
        // A pause, resume or unsubscribe bumps the epoch after its commit is visible and before
        // its session goes on, so a claim that can see events written after it (this
        // transaction's snapshot is taken) sees the epoch moved: checked here, in the
        // transaction, not only at the top of the loop — a pause committed in between let the
        // events written after it go out with the subscription still taken for active.
        let epoch = crate::wake::epochs().1;
        if stale
            || epoch != *self.targets_epoch
            || crate::capture::catalog_generation() != *self.catalog_generation
        {
            *self.targets_epoch = epoch;
            disabled = self.load_targets()?;
        }
        let pinned: Vec<i32> = self
            .targets
            .iter()
            .filter(|(_, t)| t.pinned() && !t.ordered)
            .map(|(id, _)| *id)
            .collect();
        let owned = self.dispatcher.owned();
        let budget = (IN_FLIGHT_BYTES - self.dispatcher.owned_bytes()).max(1);
        let largest = self.dispatcher.largest_readable();
        let after = self.cursor.position(|| statements.horizon())?;
        let bounds = Bounds {
            events: want,
            bytes: budget,
            largest,
        };
        let fresh = statements.new_events(after, bounds, &pinned)?;
        let room_left = want - fresh.len().min(want);
        let bytes_left = budget - fresh.iter().map(|e| e.payload_bytes).sum::<i64>();
        let mut scheduled = Vec::new();
        let mut next_due = None;
        if check_scheduled && room_left > 0 && bytes_left > 0 {
            // Read past the retries already in flight.
            let owned_bytes = self.dispatcher.owned_bytes();
            let bounds = Bounds {
                events: room_left + owned,
                bytes: bytes_left + owned_bytes,
                largest,
            };
            scheduled = statements.scheduled_events(bounds, &pinned)?;
            if scheduled.len() < room_left + owned {
                next_due = Some(statements.ms_until_next_due()?);
            }
        }
        let unknown = fresh
            .iter()
            .chain(&scheduled)
            .any(|e| !self.targets.contains_key(&e.subscription_id));
        if unknown {
            disabled.extend(self.load_targets()?);
        }
        let mut plan = Plan::new(self.dispatcher, self.now, room);
        let heads_wanted = self.ordered_heads_wanted(&mut plan, room);
        let heads = if heads_wanted.is_empty() {
            Vec::new()
        } else {
            let subscriptions: Vec<i32> = heads_wanted.iter().map(|(id, _)| *id).collect();
            let out = self.dispatcher.owned_ids_of(&subscriptions);
            statements.ordered_heads(&heads_wanted, largest, out)?
        };
        let (taken, _) = requests_for(fresh.iter().chain(&scheduled).chain(&heads), self.targets);
        let parts = self.grouped_parts(&mut plan, room.saturating_sub(taken), largest)?;
        // Once this transaction has written (unpark, disable, a transaction's parts), each
        // later read took a fresh snapshot, which may have seen events written after a pause
        // whose epoch moved after the check above. Reloading the subscriptions now, after every
        // read, makes them at least as new as any event read. (Reloading, not giving up the
        // claim: a member pausing and resuming in a loop must not starve delivery.)
        let latest = crate::wake::epochs().1;
        if latest != epoch {
            *self.targets_epoch = latest;
            disabled.extend(self.load_targets()?);
        }
        let read = || {
            fresh
                .iter()
                .chain(&scheduled)
                .chain(&heads)
                .chain(parts.iter().flat_map(|p| &p.part.events))
        };
        // Whether each owner may still read the table, as of now: after the events were read.
        disabled.extend(self.check_access(read())?);
        self.park_held(read())?;
        // Parts go first: they were read for the room left after the others.
        let mut plan = plan.with_requests(parts.len());
        for event in &fresh {
            plan.consider(event, self.targets, self.limits, true);
        }
        for event in scheduled.iter().chain(&heads) {
            plan.consider(event, self.targets, self.limits, false);
        }
        // SAFETY: reads the current transaction's start timestamp (now() in its statements).
        let now_db = unsafe { pgrx::pg_sys::GetCurrentTransactionStartTimestamp() };
        plan.hold_partial_batches(self.targets, self.batch_holds, now_db);
        statements.defer(&plan.defer)?;
        let first_left = plan.first_left;
        let events_per_request = plan.events_per_request(self.targets);
        let (start, deferred_until) = plan.into_parts();
        Ok(Claimed {
            fresh,
            scheduled,
            next_due,
            start,
            deferred_until,
            disabled,
            parts,
            first_left,
            events_per_request,
        })
    }
}
