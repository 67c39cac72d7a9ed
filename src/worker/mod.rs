//! The delivery worker: a background worker that claims due events, sends them concurrently and
//! records every outcome.
//!
//! One loop on the backend's main thread: record finished attempts (one transaction), claim due
//! events (one transaction), then wait — on the latch when nothing is in flight, on the HTTP
//! tasks otherwise. The requests themselves run on one HTTP thread that never calls Postgres. No transaction is open while a request is in flight. The rooms: `claim`
//! (what to send next), `record` (outcomes and health), `maintain` (retention, auto-disable),
//! `dispatch` (requests in flight), `backend` (signals, latch, statistics), `launcher` and
//! `callbacks` (the other two kinds of process).

mod backend;
mod backfills;
mod callbacks;
mod claim;
mod cursor;
mod cutting;
mod databases;
mod dispatch;
mod grouped;
mod launcher;
mod maintain;
mod plan;
mod record;
mod replicated;
mod session;
mod settings;
mod spent;
mod txn;
pub(crate) mod vacuum;
mod watchdog;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use tokio::runtime::Runtime;

use crate::delivery::targets::Target;
use crate::delivery::{build_sender, new_worker_runtime};
use crate::guc::WorkerSettings;
use crate::queue::{Readiness, Share, Statements};
use crate::wake::Registration;
pub use backend::encode_start;
use backend::{
    connect, decode_start, install_signal_handlers, reload_config_if_asked, report_activity, sleep,
};
use cursor::Cursor;
use dispatch::Dispatcher;
use pg_webhook_core::limits::Limits;

/// While requests are in flight the worker also watches its latch this often, so a commit is
/// noticed promptly even when every request is slow.
const BUSY_TICK: Duration = Duration::from_millis(2);
/// Outcomes wait at most this long to be recorded together (or until there are
/// `RECORD_EAGER` of them, or the worker is out of capacity).
const RECORD_DELAY: Duration = Duration::from_millis(2);
const RECORD_EAGER: usize = 256;
/// At most this many bytes of row images are claimed and not yet recorded at once: a backlog
/// of large rows is sent a few at a time instead of loaded whole. One event is always allowed,
/// however large.
const IN_FLIGHT_BYTES: i64 = 32 << 20;
/// The row images one subscription may hold, or the slow ones together: three quarters of
/// `IN_FLIGHT_BYTES`, as for requests (see `plan::share_cap`), so that large rows out to an
/// endpoint that stops answering cannot spend the budget and stop every claim of the worker.
const BYTE_SHARE: i64 = IN_FLIGHT_BYTES - IN_FLIGHT_BYTES / 4;

/// Registers the launcher, which starts each database's workers (see launcher.rs), and asks
/// for the shared memory in which a callback runner hands over to the next (callbacks/turn.rs).
pub fn register() {
    callbacks::init_preloaded();
    launcher::register();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_webhook_worker_main(arg: pg_sys::Datum) {
    let (database, index) = decode_start(arg);
    let count = crate::guc::worker_count();
    install_signal_handlers();
    // Request and response buffers come and go by the thousand per second; keep freed memory
    // instead of returning it to the kernel after every batch (brk churn showed in profiles).
    // SAFETY: mallopt only tunes glibc's allocator for this process.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
    let mut settings = WorkerSettings::read();
    settings.database = connect(database);
    // SAFETY: a plain read of a backend global.
    let pid = unsafe { pg_sys::MyProcPid };
    match crate::wake::register_worker(database, index, pid) {
        Registration::Registered => {}
        Registration::Full => {
            warning!("pg_webhook worker: no free wake-up slot; relying on pg_webhook.poll_interval")
        }
        Registration::Taken => {
            log!("pg_webhook worker {index}: another process is this worker already; leaving");
            return;
        }
    }
    let runtime = match new_worker_runtime() {
        Ok(rt) => rt,
        Err(e) => error!("pg_webhook worker: could not start the async runtime: {e}"),
    };
    log!(
        "pg_webhook worker {index} of {count} started for database \"{}\"",
        settings.database
    );
    Worker::new(settings, runtime, Share { index, count }).run();
    crate::wake::unregister_worker(pid);
}

struct Worker {
    share: Share,
    settings: WorkerSettings,
    runtime: Runtime,
    dispatcher: Dispatcher,
    limits: Limits,
    /// Each subscription's own limits as of the last claim that committed after loading them
    /// (see `Claim::load_targets`: a change makes its events put back for them due again).
    limits_seen: HashMap<i32, pg_webhook_core::limits::LimitSpec>,
    statements: Option<Statements>,
    /// The extension (pg_extension OID) whose events and subscriptions the worker's state is
    /// about (INVALID: none yet); see `forget_dropped_extension`.
    extension: pg_sys::Oid,
    cursor: Cursor,
    /// New events the cursor passed while their subscription was slow or at its own
    /// max_in_flight (see claim/lagging.rs).
    lagging: HashMap<i32, claim::Lag>,
    /// Which subscriptions were pinned (limits of their own) at the last claim.
    pinning: claim::Pinning,
    /// Which keyed subscriptions had heads to send at the last claim that asked them.
    keyed_heads: claim::KeyedHeads,
    /// The subscription whose passed events were read last.
    lag_turn: i32,
    /// When each batched subscription's wait for a partial batch ends (transaction timestamp).
    batch_holds: HashMap<i32, i64>,
    /// Transactions of grouped subscriptions being cut into parts over several claims.
    cuts: cutting::Cuts,
    targets: HashMap<i32, Target>,
    targets_loaded: Option<Instant>,
    /// Catalog invalidations seen when the targets were loaded (see `capture::identity`): a
    /// GRANT, REVOKE or role change since then reloads them before the next claim.
    catalog_generation: u64,
    /// The subscription-change epoch (wake.rs) when the targets were loaded.
    targets_epoch: u64,
    /// Subscriptions that were sending at the last load: one that starts sending (resumed,
    /// unsubscribed, readable again) gets its parked events back.
    sending: HashSet<i32>,
    next_poll: Instant,
    claim_wanted: bool,
    /// The last claim read a full page of new events: claim again without spacing.
    paging: bool,
    /// The last claim left a new event because its subscription holds its share (see
    /// `Plan::share`): claim again once outcomes are recorded.
    share_waiting: bool,
    /// The last claim that read due events left some because their subscription holds its
    /// share or its own max_in_flight: read them again once outcomes are recorded.
    due_held: bool,
    last_claim: Instant,
    /// How many events the requests the last claim started could carry, per request (a batched
    /// subscription's a batch each): how many events the next claim reads per free request.
    events_per_request: f64,
    /// The last claim passed every new event it read (all of slow subscriptions, see
    /// `Worker::fresh_want`).
    passing: bool,
    /// When a scheduled retry may next be due (`None`: none is scheduled).
    scheduled_due_at: Option<Instant>,
    /// When a claim last read due events (`None`: none has yet).
    due_read_at: Option<Instant>,
    /// Failed attempts to record the current outcomes in a row, and when to try again.
    record_failures: u32,
    record_retry_at: Option<Instant>,
    ready: bool,
    /// The last not-ready state logged, so it is logged once.
    told: Option<Readiness>,
    /// Last epochs seen (see wake.rs).
    schedule_epoch: u64,
    config_epoch: u64,
    /// When retention and auto-disable run next (worker 0 only).
    next_maintenance: Instant,
    next_reconcile: Instant,
    /// Where the retention purge goes on from.
    purge_from: crate::queue::PurgeCursor,
    next_stats_check: Instant,
    next_publish: Instant,
    published_empty: bool,
}

impl Worker {
    fn new(settings: WorkerSettings, runtime: Runtime, share: Share) -> Worker {
        let sender = build_sender(&settings).unwrap_or_else(|e| {
            warning!("pg_webhook worker: {e}; using defaults until it is fixed");
            let mut fallback = settings.clone();
            fallback.allowed_destinations.clear();
            fallback.ca_bundle.clear();
            build_sender(&fallback).unwrap_or_else(|e| error!("pg_webhook worker: {e}"))
        });
        let mut dispatcher = Dispatcher::new(sender);
        dispatcher.max_payload_bytes = settings.max_payload_bytes;
        dispatcher.held_room = settings.max_in_flight;
        dispatcher.database = settings.database.clone();
        Worker {
            share,
            settings,
            runtime,
            dispatcher,
            limits: Limits::default(),
            limits_seen: HashMap::new(),
            statements: None,
            extension: pg_sys::Oid::INVALID,
            cursor: Cursor::default(),
            lagging: HashMap::new(),
            pinning: claim::Pinning::default(),
            keyed_heads: claim::KeyedHeads::default(),
            lag_turn: 0,
            batch_holds: HashMap::new(),
            cuts: cutting::Cuts::default(),
            targets: HashMap::new(),
            targets_loaded: None,
            catalog_generation: 0,
            targets_epoch: 0,
            sending: HashSet::new(),
            next_poll: Instant::now(),
            claim_wanted: true,
            paging: false,
            share_waiting: false,
            due_held: false,
            due_read_at: None,
            last_claim: Instant::now(),
            events_per_request: 1.0,
            passing: false,
            scheduled_due_at: Some(Instant::now()),
            record_failures: 0,
            record_retry_at: None,
            ready: false,
            told: None,
            schedule_epoch: crate::wake::epochs().0,
            config_epoch: crate::wake::epochs().1,
            next_maintenance: Instant::now(),
            next_reconcile: Instant::now(),
            purge_from: crate::queue::PurgeCursor::new(Instant::now()),
            next_stats_check: Instant::now(),
            next_publish: Instant::now(),
            published_empty: true,
        }
    }

    fn run(&mut self) {
        self.setup_session();
        loop {
            pg_sys::check_for_interrupts!();
            if reload_config_if_asked() && !self.reconfigure() {
                return;
            }
            let now = Instant::now();
            let (schedule, config) = crate::wake::epochs();
            if config != self.config_epoch {
                // A subscription changed: reload them before the next claim.
                self.config_epoch = config;
                self.targets_loaded = None;
                self.claim_wanted = true;
            }
            if schedule != self.schedule_epoch {
                // A resume or replay made events due: look at scheduled ones now.
                self.schedule_epoch = schedule;
                self.scheduled_due_at = Some(now);
                self.claim_wanted = true;
            }
            if self.record_due(now) {
                self.record();
            }
            if self.share.index == 0 && self.statements.is_some() {
                self.worker_zero_duties(now);
            }
            if self.claim_due(now) {
                self.claim();
            }
            if self.told == Some(Readiness::Missing) {
                // Not ours to wait in: a connected worker would block DROP DATABASE and
                // CREATE DATABASE ... TEMPLATE of a database that does not even use pg_webhook.
                // SAFETY: reads a backend global.
                crate::wake::note_missing(unsafe { pg_sys::MyDatabaseId });
                return;
            }
            self.publish_in_flight(now);
            report_activity(None);
            self.wait();
        }
    }

    /// Shares what is in flight with the stats view, at most every 100 ms.
    fn publish_in_flight(&mut self, now: Instant) {
        if now < self.next_publish {
            return;
        }
        self.next_publish = now + Duration::from_millis(100);
        let counts = self.dispatcher.in_flight_by_subscription();
        if counts.is_empty() && self.published_empty {
            return;
        }
        self.published_empty = counts.is_empty();
        // SAFETY: reads a backend global.
        crate::wake::publish_in_flight(unsafe { pg_sys::MyProcPid }, &counts);
    }

    /// How many more requests may start (a batch is one): none while the byte budget is spent.
    fn room(&self) -> usize {
        if self.dispatcher.owned_bytes() >= IN_FLIGHT_BYTES {
            return 0;
        }
        self.settings
            .max_in_flight
            .saturating_sub(self.dispatcher.requests_owned())
    }

    fn record_due(&self, now: Instant) -> bool {
        if self.record_retry_at.is_some_and(|at| now < at) {
            return false;
        }
        if self.dispatcher.held_due_at().is_some_and(|at| now >= at) {
            return true;
        }
        let Some(since) = self.dispatcher.outcomes_since else {
            return false;
        };
        self.dispatcher.outcomes.len() >= RECORD_EAGER
            || now >= since + RECORD_DELAY
            || self.room() == 0
    }

    fn claim_due(&self, now: Instant) -> bool {
        self.claim_at().is_some_and(|at| now >= at)
    }

    fn wait(&mut self) {
        let now = Instant::now();
        // The next claim (which includes the poll tick) only counts while there is room;
        // when full, only finishing requests and recording can move things on.
        let mut deadline = now + self.settings.poll_interval;
        if let Some(since) = self.dispatcher.outcomes_since {
            let at = since + RECORD_DELAY;
            deadline = deadline.min(self.record_retry_at.map_or(at, |r| r.max(at)));
        }
        if let Some(at) = self.claim_at() {
            deadline = deadline.min(at);
        }
        if let Some(at) = self.dispatcher.held_due_at() {
            deadline = deadline.min(self.record_retry_at.map_or(at, |r| r.max(at)));
        }
        if self.share.index == 0 && self.statements.is_some() {
            // A purge that is behind comes back within milliseconds, idle or not (maintenance
            // runs only with the statements prepared: without, this deadline would never move).
            deadline = deadline.min(self.next_maintenance);
        }
        if deadline <= now {
            return;
        }
        if self.dispatcher.in_flight() == 0 {
            // Going idle: what this process did reaches the statistics (and autovacuum) now,
            // not at its next transaction.
            backend::report_stats();
            if self.claim_wanted {
                // Work is known to be waiting and only the claim spacing holds it back: under a
                // stream of commits the latch is set again at once, so sleeping on it would spin.
                sleep(deadline - now);
            } else if backend::wait_latch(deadline - now) {
                self.claim_wanted = true;
            }
            return;
        }
        self.dispatcher
            .collect(&self.runtime, (deadline - now).min(BUSY_TICK));
        if backend::take_latch() {
            self.claim_wanted = true;
        }
    }
}
