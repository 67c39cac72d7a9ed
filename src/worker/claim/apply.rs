//! After a claim transaction: starting what it chose, moving the cursor, and working out when
//! to claim again.

use std::time::{Duration, Instant};

use pgrx::prelude::*;

use super::{lagging, Lag, STATS_CHECK_EVERY};
use crate::queue::QueuedEvent;
use crate::worker::dispatch::{Gathered, Pace};
use crate::worker::Worker;

/// What a claim transaction found.
pub(super) struct Claimed {
    pub(super) fresh: Vec<QueuedEvent>,
    pub(super) scheduled: Vec<QueuedEvent>,
    /// Due events were looked for.
    pub(super) due_read: bool,
    /// `Some` when retries were looked for and fewer than asked came back: when the next is due.
    pub(super) next_due: Option<Option<f64>>,
    /// What starts: events one per request, and batched subscriptions' events in batches
    /// (written down already).
    pub(super) start: Vec<QueuedEvent>,
    pub(super) batched: Vec<Gathered>,
    pub(super) deferred_until: Option<Instant>,
    /// Subscriptions this claim disabled (id, reason), for the log.
    pub(super) disabled: Vec<(String, String)>,
    /// Parts of transactions to send (subscriptions grouped by transaction).
    pub(super) parts: Vec<crate::worker::grouped::ReadyPart>,
    /// A transaction's cut is left for the next claim to go on with (see cutting.rs).
    pub(super) cutting: bool,
    /// The first new event left for want of room (see `Plan::first_left`).
    pub(super) first_left: Option<(i64, i64)>,
    /// How many events a request of what this claim started could carry (`None`: none started).
    pub(super) events_per_request: Option<f64>,
    /// See `Plan::passed` and `Plan::share_left`.
    pub(super) passed: crate::worker::plan::Passed,
    pub(super) share_left: Option<Instant>,
    pub(super) share_held: bool,
    /// Every due event read that did not go was left for a subscription holding its share
    /// (or at its own max_in_flight).
    pub(super) only_held_due: bool,
    /// Some due event read was left for a subscription holding its share (or at its own
    /// max_in_flight).
    pub(super) due_held: bool,
    /// Some due event read was left for want of room.
    pub(super) due_left: bool,
    /// Where each subscription's passed events read again now stand (`None`: all read).
    pub(super) lag_updates: Vec<(i32, Option<Lag>)>,
    /// The subscriptions pinned changed within the claim: read the queue again.
    pub(super) reread: bool,
    /// A full page of new events (or a transaction's part) of this many, and the planner takes
    /// the queue for smaller than that.
    pub(super) stats_stale: Option<usize>,
    /// Loading the subscriptions gave some their parked events back.
    pub(super) unparked: bool,
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
    /// Starts what the claim chose and works out when to look again.
    pub(super) fn apply(
        &mut self,
        claimed: Claimed,
        reloaded: bool,
        (want, fresh_want): (usize, usize),
        check_scheduled: bool,
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
        let full_by_count = claimed.fresh.len() == fresh_want;
        let full_page = full_by_count || cut_short || claimed.first_left.is_some();
        self.cursor.page_read(read_up_to(&claimed), !full_page);
        // Reads of passed events first: they may end a stretch this claim widens again.
        for (sub, lag) in claimed.lag_updates {
            match lag {
                Some(lag) => self.lagging.insert(sub, lag),
                None => self.lagging.remove(&sub),
            };
        }
        self.passing = !claimed.fresh.is_empty()
            && (claimed.fresh.iter()).all(|e| claimed.passed.contains_key(&e.subscription_id));
        lagging::note_passed(&mut self.lagging, claimed.passed);
        if claimed.reread {
            self.cursor.reset();
        }
        if check_scheduled {
            let room_left = want - claimed.fresh.len().min(want);
            self.scheduled_due_at = match claimed.next_due {
                // The page was full, or room ran out: more retries may be due now.
                None if room_left == 0 || !claimed.scheduled.is_empty() => Some(now),
                None => self.scheduled_due_at,
                // (Read to the end, but not all could go.)
                Some(_) if claimed.due_left => Some(now),
                Some(None) => None,
                Some(Some(ms)) => Some(now + Duration::from_millis(ms.max(0.0) as u64)),
            };
        }
        if check_scheduled {
            // Only a claim that read due events knows; a claim in between leaves it be.
            self.due_held = claimed.due_held;
        }
        if claimed.due_read {
            self.due_read_at = Some(now);
        }
        if (reloaded && !check_scheduled) || claimed.unparked {
            // Events may have been made due without a word to this worker (unparked on a
            // change it saw only now, whatever the command's snapshot): due events are looked
            // at as often as the subscriptions are loaded, a second at most, however busy,
            // and right after this claim gave some back. (Not after every load: an idle
            // worker's poll reads due events after loading, and would claim again a
            // millisecond later.)
            self.scheduled_due_at = Some(now);
        }
        if claimed.only_held_due && self.scheduled_due_at.is_some_and(|t| t <= now) {
            // The due events left were all a subscription's holding its share: reading them
            // again before its requests end would find the same, so the next read comes when
            // outcomes are recorded (`record`), or a second on if none are. (Not when others'
            // were left too: theirs may go at the next claim.)
            self.scheduled_due_at = Some(now + crate::worker::dispatch::SLOW);
        }
        if let Some(at) = claimed.deferred_until {
            // Deferred events and rate-held heads: look again when the first is due.
            self.scheduled_due_at = Some(self.scheduled_due_at.map_or(at, |t| t.min(at)));
        }
        if let Some(per_request) = claimed.events_per_request {
            self.events_per_request = per_request;
        }
        self.start_claimed(claimed.start, claimed.batched);
        let mut recut = false;
        for ready in claimed.parts {
            // Not if this very claim found its owner may no longer read the table.
            if let Some(target) = self
                .targets
                .get(&ready.subscription_id)
                .filter(|t| t.sends())
            {
                let (sub, txid) = (ready.subscription_id, ready.txid);
                let under = self.cuts.cut_again_under(sub, txid);
                let tx = ready.tx;
                if self
                    .dispatcher
                    .start_part(&self.runtime, ready.part.events, target, tx, under)
                {
                    self.cuts.part_went(sub, txid);
                } else {
                    recut = true;
                }
            }
        }
        // A backlog the planner does not know about: have the queue counted again. (Not again
        // within a second of a try that could not: it waits up to a second for a lock; nor of
        // one that did: a sample of a bloated queue may count it short of a part retried at
        // every claim.)
        if let Some(page) = claimed.stats_stale.filter(|_| now >= self.next_stats_check) {
            match crate::worker::vacuum::refresh_queue_stats(page) {
                Some(true) => {
                    log!("pg_webhook worker: analyzed webhook._event_queue, whose statistics said it was nearly empty");
                    self.next_stats_check = now + STATS_CHECK_EVERY;
                }
                Some(false) => {}
                None => self.next_stats_check = now + STATS_CHECK_EVERY,
            }
        }
        // A full page means a backlog: keep paging without spacing; unless a subscription
        // holding its share stopped the page, which only a request ending (or the
        // subscription turning slow) moves on.
        // (Nor is there any use reading on while the subscription this page was full of holds
        // its share now.)
        let cap = super::share_cap(self.settings.max_in_flight);
        // (A fresh look at the pace: what this claim started counts now.)
        let at_share = full_page
            && self
                .fullest_share(&self.dispatcher.pace(now))
                .is_some_and(|held| held >= cap);
        let paging = full_page && claimed.share_left.is_none() && !at_share;
        self.paging = paging;
        // A part over a lowered payload limit is cut again by the next claim, at once.
        // So is a transaction whose cut this claim did not finish.
        self.claim_wanted = paging || recut || claimed.cutting;
        self.share_waiting = claimed.share_held || at_share;
        if let Some(at) = claimed.share_left {
            self.next_poll = self.next_poll.min(at);
        } else if at_share {
            self.next_poll = self.next_poll.min(now + crate::worker::dispatch::SLOW);
        }
        if let Some(at) = self.scheduled_due_at {
            self.next_poll = self.next_poll.min(at.max(now + Duration::from_millis(1)));
        }
    }
}

/// Nothing goes out before the synchronous standbys have it, nor before its commit is flushed
/// here (see replicated.rs).
pub(super) fn wait_until_safe_to_send(claimed: &Claimed) {
    let batched = claimed.batched.iter().flat_map(|g| g.events());
    let parts = claimed.parts.iter().flat_map(|p| &p.part.events);
    let mut going = claimed.start.iter().chain(batched).chain(parts).peekable();
    if going.peek().is_some() {
        use crate::worker::replicated;
        replicated::wait_for_synchronous_standbys(replicated::flushed_lsn());
        replicated::flush_commits(going.map(|e| e.txid));
    }
}

impl Worker {
    /// Hands what a claim chose to the dispatcher: batches as the claim gathered them, the
    /// other events one by one.
    fn start_claimed(&mut self, events: Vec<QueuedEvent>, batched: Vec<Gathered>) {
        for event in events {
            let target = self.targets.get(&event.subscription_id);
            self.dispatcher.start(&self.runtime, event, target);
        }
        for gathered in batched {
            self.dispatcher.board(&self.runtime, gathered);
        }
    }
}

impl Worker {
    /// New events to read: as many as the claim wants, unless a subscription (not slow) nearly
    /// holds its share: reading more than it may start would read its next events again and
    /// again. While the cursor passes a slow subscription's backlog (the last claim passed
    /// every new event it read), a whole claim's worth: the free requests alone would pass it
    /// an event or two per claim, and the others' events behind it would wait minutes.
    pub(super) fn fresh_want(
        &self,
        pace: &Pace,
        (room, want, cap): (usize, usize, usize),
        per_request: f64,
    ) -> usize {
        match self.fullest_share(pace) {
            Some(held) if held + room > cap => {
                // (A quarter of the room at least: others' events may be among them.)
                let requests = cap.saturating_sub(held).max(room / 4).max(1);
                want.min((requests as f64 * per_request).ceil() as usize)
            }
            _ if self.passing => want.max(self.settings.batch_size),
            _ => want,
        }
    }

    /// `fresh_want`, less a quarter of the requests `want` fills (one at least, of
    /// `per_request` events each) when due events may be due and have not been read for a
    /// poll interval (a second at most). Due events (retries, resumed backlogs, deferred ones)
    /// are read with the room the new ones leave: a backlog of new events that filled every
    /// page kept them unread for as long as it lasted. Whole requests: a batched
    /// subscription's page cut within a batch would be held back by its `batch_wait` as a
    /// partial batch.
    pub(super) fn leave_room_for_due(
        &self,
        fresh_want: usize,
        (want, per_request): (usize, f64),
        check_scheduled: bool,
        now: Instant,
    ) -> usize {
        let interval = self.settings.poll_interval.min(Duration::from_secs(1));
        let starved = check_scheduled
            && self
                .due_read_at
                .is_none_or(|t| now.duration_since(t) >= interval);
        if !starved {
            return fresh_want;
        }
        // A quarter of the requests `want` fills, one at least.
        let per = (per_request.ceil() as usize).max(1);
        let kept = per * (want / per / 4).max(1);
        fresh_want.min(want.saturating_sub(kept))
    }

    /// The requests held by the subscription (not slow) that holds the most.
    fn fullest_share(&self, pace: &Pace) -> Option<usize> {
        self.dispatcher
            .requests_per_subscription()
            .filter(|(sub, _)| !pace.is_slow(*sub))
            .map(|(_, held)| held)
            .max()
    }
}
