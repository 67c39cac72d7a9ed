//! Deciding what to send next: one transaction that reads new events (through the cursor),
//! retries that are due and the heads of ordered subscriptions, holds back what may not go yet
//! (paused subscriptions, owners who may no longer read the table, per-subscription limits) and
//! hands the rest to the dispatcher.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pg_webhook_core::limits::{LimitSpec, Limits};
use pgrx::spi::SpiResult;

mod access;
mod apply;
mod due;
mod gather;
mod lagging;
mod others;

pub(super) use lagging::Lag;
pub(super) use others::{KeyedHeads, Pinning};

use apply::Claimed;

use super::dispatch::{Dispatcher, Pace};
use super::plan::{owner_cap, share_cap, Plan};
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
        self.paging = false;
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
        // A request that has ended is not waiting (see dispatch/pace.rs), however long this
        // thread was busy before.
        self.dispatcher.collect(&self.runtime, Duration::ZERO);
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
        let cap = share_cap(self.settings.max_in_flight);
        // (What is out does not change before the claim's plan is made: one look serves both.)
        let pace = self.dispatcher.pace(now);
        // Retries are looked for only when one may be due: skipping the query otherwise keeps
        // a claim to one statement under a stream of new events.
        let check_scheduled = polling || self.scheduled_due_at.is_some_and(|t| now >= t);
        let fresh_want = self.fresh_want(&pace, (room, want, cap), per_request);
        let fresh_want =
            self.leave_room_for_due(fresh_want, (want, per_request), check_scheduled, now);
        let claimed = {
            let Some(statements) = &self.statements else {
                return;
            };
            let mut claim = Claim {
                statements,
                dispatcher: &self.dispatcher,
                limits: &mut self.limits,
                limits_seen: &self.limits_seen,
                targets: &mut self.targets,
                sending: &mut self.sending,
                catalog_generation: &mut self.catalog_generation,
                targets_epoch: &mut self.targets_epoch,
                cursor: &mut self.cursor,
                batch_holds: &mut self.batch_holds,
                cuts: &mut self.cuts,
                lagging: &self.lagging,
                pinning: &mut self.pinning,
                keyed_heads: &mut self.keyed_heads,
                lag_turn: &mut self.lag_turn,
                cap,
                owner_cap: owner_cap(self.settings.max_in_flight),
                pace,
                share: self.share,
                default_timeout: self.settings.default_timeout,
                now,
                reloaded: false,
                unparked: false,
            };
            let stale = self.targets_loaded.is_none_or(|t| {
                now.duration_since(t) >= self.settings.poll_interval.min(Duration::from_secs(1))
            });
            let result = txn::run("claiming due events", || {
                if !txn::same_extension(statements.extension) {
                    return Ok(None);
                }
                claim
                    .run(stale, (want, fresh_want), room, check_scheduled)
                    .map(Some)
            });
            // What the claim cut is there only if it committed.
            match &result {
                Ok(Some(_)) => claim.cuts.commit(),
                _ => claim.cuts.discard(),
            }
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
                // The slots given out to events this claim put back were not taken: the
                // events were not put back. (Events put back earlier keep theirs in the queue;
                // the next new ones may take a free slot before them.)
                self.limits.forget_given_out_all();
                return;
            }
        };
        if reloaded {
            self.limits_seen = (self.targets.iter())
                .map(|(id, t)| (*id, t.limits))
                .collect();
        }
        apply::wait_until_safe_to_send(&claimed);
        self.apply(claimed, reloaded, (want, fresh_want), check_scheduled, now);
    }
}

/// One claim transaction's view of the worker.
struct Claim<'a> {
    statements: &'a Statements,
    dispatcher: &'a Dispatcher,
    limits: &'a mut Limits,
    limits_seen: &'a HashMap<i32, LimitSpec>,
    targets: &'a mut HashMap<i32, Target>,
    sending: &'a mut HashSet<i32>,
    catalog_generation: &'a mut u64,
    /// The subscription-change epoch (wake.rs) the targets were loaded at.
    targets_epoch: &'a mut u64,
    cursor: &'a mut super::cursor::Cursor,
    /// When each batched subscription's wait for a partial batch ends (see `Plan`).
    batch_holds: &'a mut HashMap<i32, i64>,
    /// Transactions being cut over several claims (see cutting.rs).
    cuts: &'a mut super::cutting::Cuts,
    /// Where each subscription's passed events lie (see lagging.rs).
    lagging: &'a HashMap<i32, Lag>,
    /// The subscription whose passed events were read last (see lagging.rs).
    lag_turn: &'a mut i32,
    /// Which subscriptions were pinned at the last claim.
    pinning: &'a mut others::Pinning,
    keyed_heads: &'a mut others::KeyedHeads,
    /// See `plan::share_cap` and `plan::owner_cap`.
    cap: usize,
    owner_cap: usize,
    /// The subscriptions' pace when the claim began (see dispatch/pace.rs).
    pace: Pace,
    share: crate::queue::Share,
    default_timeout: Duration,
    now: Instant,
    reloaded: bool,
    /// Loading the subscriptions gave events back to some (see `load_targets`).
    unparked: bool,
}

impl Claim<'_> {
    /// Reads up to `want` events (`fresh_want` of them new) for up to `room` requests, and
    /// decides what starts.
    fn run(
        &mut self,
        stale: bool,
        (want, fresh_want): (usize, usize),
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
        let pinned = self.pinned();
        if self.pinning_changed(&pinned) {
            // A subscription that gets or loses limits of its own (or a pinned one that goes)
            // changes which worker its events belong to, and this worker's cursor (or
            // another's) may have passed some it did not send (see lagging.rs): read
            // everything again. A new subscription has nothing passed yet.
            self.cursor.reset();
        }
        let budget = (IN_FLIGHT_BYTES - self.dispatcher.owned_bytes()).max(1);
        let largest = self.dispatcher.largest_readable();
        let after = self.cursor.position(|| statements.horizon())?;
        let bounds = Bounds {
            events: fresh_want,
            bytes: self.dispatcher.fresh_bytes(&self.pace, budget),
            largest,
        };
        let fresh = statements.new_events(after, bounds, &pinned)?;
        // (Not the bytes nor the requests of events of subscriptions that can start nothing:
        // those are passed or wait, and a backlog of them kept the others' retries unread.)
        let held = self.cannot_start();
        let room_left = want - self.starting(&fresh, &held).min(want);
        let may_start = |e: &&QueuedEvent| !held.contains(&e.subscription_id);
        let bytes_left = budget
            - fresh
                .iter()
                .filter(may_start)
                .map(|e| e.payload_bytes)
                .sum::<i64>();
        let mut scheduled = Vec::new();
        let mut next_due = None;
        let due_read = check_scheduled && room_left > 0 && bytes_left > 0;
        if due_read {
            (scheduled, next_due) = self.read_due((room_left, bytes_left, largest), &pinned)?;
        }
        disabled.extend(self.load_unknown(fresh.iter().chain(&scheduled))?);
        let pace = std::mem::take(&mut self.pace);
        let caps = (self.cap, self.owner_cap);
        let mut plan = Plan::new(self.dispatcher, self.now, room, caps, pace);
        let lag_reads = self.read_lagging_after(
            &plan,
            (&fresh, &scheduled),
            &held,
            (room, bytes_left, largest),
            &pinned,
        )?;
        // A passed event the cursor reads again (a new pass) is started once.
        let fresh_ids: HashSet<i64> = fresh.iter().map(|e| e.id).collect();
        let lagged: Vec<QueuedEvent> = lag_reads
            .iter()
            .flat_map(|r| r.2.iter().filter(|e| !fresh_ids.contains(&e.id)).cloned())
            .collect();
        disabled.extend(self.load_unknown(lagged.iter())?);
        let read_before = fresh.iter().chain(&scheduled).chain(&lagged);
        let heads = self.read_heads(&mut plan, room, (budget, read_before), largest)?;
        let taken = plan.startable(
            fresh.iter().chain(&scheduled).chain(&lagged).chain(&heads),
            self.targets,
        );
        let (parts, cutting) =
            self.grouped_parts(&mut plan, room.saturating_sub(taken), largest)?;
        let stats_stale = self.stats_stale((fresh.len(), fresh_want), &parts)?;
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
        // Reloaded since the reads with other subscriptions pinned (one made with limits of
        // its own, found among the events): they were read by the old slices, and the cursor
        // may pass events now another worker's, or its own it skipped. Read everything again.
        let reread = self.reloaded && self.pinned() != pinned;
        let read = || {
            fresh
                .iter()
                .chain(&scheduled)
                .chain(&lagged)
                .chain(&heads)
                .chain(parts.iter().flat_map(|p| &p.part.events))
        };
        // Whether each owner may still read the table, as of now: after the events were read.
        disabled.extend(self.check_access(read())?);
        let mut left = self.park_held(read())?;
        // Parts go first: they were read for the room left after the others.
        let mut plan = plan.with_requests(parts.len());
        // Due events (retries at their time), then passed ones, then new ones: a
        // subscription's oldest go first.
        for event in scheduled.iter().chain(&lagged) {
            plan.consider(event, self.targets, self.limits, false);
        }
        for event in &fresh {
            plan.consider(event, self.targets, self.limits, true);
        }
        for event in &heads {
            plan.consider(event, self.targets, self.limits, false);
        }
        // SAFETY: reads the current transaction's start timestamp (now() in its statements).
        let now_db = unsafe { pgrx::pg_sys::GetCurrentTransactionStartTimestamp() };
        plan.hold_partial_batches(self.targets, self.batch_holds, now_db);
        let (start, batched) = self.gather(&mut plan)?;
        let left_deferred = statements.defer(&plan.defer)?;
        plan.deferred(&left_deferred, self.limits);
        left.extend(left_deferred);
        plan.leave(&left, fresh.iter().chain(&lagged), scheduled.iter());
        let taken: HashSet<i64> = (start.iter())
            .chain(batched.iter().flat_map(|g| g.events()))
            .map(|e| e.id)
            .chain(
                plan.defer
                    .iter()
                    .map(|d| d.1)
                    .filter(|id| !left.contains(id)),
            )
            .collect();
        let lag_updates = lagging::after_reads(self.lagging, &lag_reads, |id| taken.contains(&id));
        // Due events read that did not go: all left for subscriptions holding their share, or
        // some for want of room (more may be due then).
        let left_due = |e: &QueuedEvent| {
            !(self.dispatcher.owns(e.id) || taken.contains(&e.id) || plan.held_due.contains(&e.id))
        };
        let due_left = scheduled.iter().any(left_due);
        let only_held_due = !plan.held_due.is_empty() && !due_left;
        let due_held = !plan.held_due.is_empty();
        let first_left = gather::first_left(&fresh, plan.first_left, &batched);
        let events_per_request = plan.events_per_request(self.targets);
        let passed = std::mem::take(&mut plan.passed);
        let (share_left, share_held) = (plan.share_left, plan.share_held);
        let deferred_until = plan.earliest();
        Ok(Claimed {
            fresh,
            scheduled,
            next_due,
            start,
            batched,
            deferred_until,
            disabled,
            parts,
            first_left,
            events_per_request,
            passed,
            share_left,
            share_held,
            only_held_due,
            due_held,
            due_left,
            due_read,
            lag_updates,
            reread,
            stats_stale,
            cutting,
            unparked: self.unparked,
        })
    }
}
