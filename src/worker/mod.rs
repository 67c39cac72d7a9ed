//! The delivery worker: a background worker that claims due events, sends them concurrently and
//! records every outcome.
//!
//! One loop on the backend's main thread: record finished attempts (one transaction), claim due
//! events (one read-only transaction), then wait — on the latch when nothing is in flight, on the
//! HTTP tasks otherwise. No transaction is open while a request is in flight.

mod callbacks;
mod cursor;
mod dispatch;
mod launcher;
pub(crate) mod targets;
mod txn;

use std::collections::HashMap;
use std::ffi::{c_int, CString};
use std::time::{Duration, Instant};

use pg_webhook_core::address::AddressPolicy;
use pg_webhook_core::http::{Sender, SenderSettings};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use tokio::runtime::Runtime;

use crate::guc::WorkerSettings;
use crate::queue::{self, QueuedEvent, Readiness, Statements};
use cursor::Cursor;
use dispatch::Dispatcher;
use pg_webhook_core::limits::{Admission, Limits};
use targets::Target;

/// While requests are in flight the worker also watches its latch this often, so a commit is
/// noticed promptly even when every request is slow.
const BUSY_TICK: Duration = Duration::from_millis(2);
/// Under a stream of commits, claims are at least this far apart, so each claim (one
/// transaction) picks up several events instead of one. A commit after a quiet spell is
/// claimed at once.
const CLAIM_SPACING: Duration = Duration::from_millis(1);
/// Outcomes wait at most this long to be recorded together (or until there are
/// `RECORD_EAGER` of them, or the worker is out of capacity).
const RECORD_DELAY: Duration = Duration::from_millis(2);
const RECORD_EAGER: usize = 256;
/// Rows per retention delete.
const PURGE_BATCH: i64 = 1000;
/// After this many failed attempts to record a batch, its events are left queued (and will be
/// sent again) instead of holding worker capacity forever.
const RECORD_RETRIES: u32 = 3;

/// Registers the launcher, which starts each database's workers (see launcher.rs).
pub fn register() {
    launcher::register();
}

/// Where a dynamic worker goes, packed into its one start argument: the database oid in the
/// high half, the worker's index (or `CALLBACK_RUNNER`) in the low half.
pub fn encode_start(database: pg_sys::Oid, index: i32) -> pg_sys::Datum {
    pg_sys::Datum::from(((database.to_u32() as u64) << 32) | index as u32 as u64)
}

fn decode_start(arg: pg_sys::Datum) -> (pg_sys::Oid, i32) {
    let raw = arg.value() as u64;
    (pg_sys::Oid::from((raw >> 32) as u32), raw as u32 as i32)
}

/// Connects a dynamic worker to its database and returns the database's name.
fn connect(database: pg_sys::Oid) -> String {
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    // A catalog lookup: only inside a transaction.
    txn::run("reading the database name", || {
        Spi::get_one::<String>("SELECT pg_catalog.current_database()::text")
    })
    .ok()
    .flatten()
    .unwrap_or_default()
}

extern "C-unwind" {
    // Postgres' own handlers, linked directly rather than through pgrx's guarded wrappers,
    // which must not run in signal context. `die` makes SIGTERM cancel a running query too.
    fn die(signal: c_int);
    fn SignalHandlerForConfigReload(signal: c_int);
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
    if !crate::wake::register_worker(database, index, pid) {
        warning!("pg_webhook worker: no free wake-up slot; relying on pg_webhook.poll_interval");
    }
    let runtime = match new_runtime() {
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

/// SIGHUP reloads the configuration, SIGTERM ends the process (cancelling a running query);
/// installed by every pg_webhook background worker before it unblocks signals.
fn install_signal_handlers() {
    // SAFETY: standard handlers, installed before signals are unblocked.
    unsafe {
        pg_sys::pqsignal(libc::SIGHUP, Some(SignalHandlerForConfigReload));
        pg_sys::pqsignal(libc::SIGTERM, Some(die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// A tokio runtime on the calling (backend main) thread, for the worker and for `ping`.
pub(crate) fn new_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .on_thread_start(block_signals_in_helper_thread)
        .build()
}

/// Helper threads (DNS lookups) must never take a Postgres signal: the handlers touch backend
/// state that belongs to the main thread.
fn block_signals_in_helper_thread() {
    // SAFETY: sigfillset/pthread_sigmask on a local set, for the calling thread only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

pub(crate) fn build_sender(settings: &WorkerSettings) -> Result<Sender, String> {
    let policy = AddressPolicy::parse(&settings.allowed_destinations).map_err(|e| e.to_string())?;
    let extra_ca_pem = match settings.ca_bundle.trim() {
        "" => None,
        path => Some(
            std::fs::read(path)
                .map_err(|e| format!("could not read pg_webhook.ca_bundle '{path}': {e}"))?,
        ),
    };
    Sender::new(&SenderSettings {
        max_idle_per_host: settings.max_in_flight,
        response_excerpt_bytes: settings.response_excerpt_bytes,
        extra_ca_pem,
        policy,
        ..SenderSettings::default()
    })
    .map_err(|e| e.to_string())
}

/// This worker's share of the events: ids congruent to `index` modulo `count`.
#[derive(Clone, Copy)]
pub struct Share {
    pub index: i32,
    pub count: i32,
}

struct Worker {
    share: Share,
    settings: WorkerSettings,
    runtime: Runtime,
    dispatcher: Dispatcher,
    limits: Limits,
    statements: Option<Statements>,
    cursor: Cursor,
    targets: HashMap<i32, Target>,
    targets_loaded: Option<Instant>,
    next_poll: Instant,
    claim_wanted: bool,
    /// The last claim read a full page of new events: claim again without spacing.
    paging: bool,
    last_claim: Instant,
    /// When a scheduled retry may next be due (`None`: none is scheduled).
    scheduled_due_at: Option<Instant>,
    record_failures: u32,
    ready: bool,
    /// The last not-ready state logged, so it is logged once.
    told: Option<Readiness>,
    /// Last epochs seen (see wake.rs).
    schedule_epoch: u64,
    config_epoch: u64,
    /// When retention and auto-disable run next (worker 0 only).
    next_maintenance: Instant,
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
        dispatcher.database = settings.database.clone();
        Worker {
            share,
            settings,
            runtime,
            dispatcher,
            limits: Limits::default(),
            statements: None,
            cursor: Cursor::default(),
            targets: HashMap::new(),
            targets_loaded: None,
            next_poll: Instant::now(),
            claim_wanted: true,
            paging: false,
            last_claim: Instant::now(),
            scheduled_due_at: Some(Instant::now()),
            record_failures: 0,
            ready: false,
            told: None,
            schedule_epoch: crate::wake::epochs().0,
            config_epoch: crate::wake::epochs().1,
            next_maintenance: Instant::now(),
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
            if self.share.index == 0 && now >= self.next_maintenance && self.statements.is_some() {
                self.maintain(now);
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
            self.wait();
        }
    }

    /// Session settings: a pinned search_path so no user object can hijack the worker's
    /// queries, asynchronous commit because a lost outcome only means a resend, and index-only
    /// access paths.
    fn setup_session(&mut self) {
        let _ = txn::run("session setup", || {
            Spi::connect(|client| {
                client.select(
                    "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),
                            pg_catalog.set_config('synchronous_commit', 'off', false),
                            pg_catalog.set_config('lock_timeout', '5s', false),
                            pg_catalog.set_config('statement_timeout', '60s', false),
                            pg_catalog.set_config('application_name', 'pg_webhook worker', false),
                            -- The statements are prepared once, often while the queue is empty;
                            -- a plan that scans the whole queue would be fine then and ruinous
                            -- with a backlog. The queue is only ever read through its indexes.
                            pg_catalog.set_config('enable_seqscan', 'off', false),
                            pg_catalog.set_config('enable_bitmapscan', 'off', false),
                            -- Disabled paths inflate plan costs past jit_above_cost, and JIT
                            -- compiling a tiny query took 130 ms a time.
                            pg_catalog.set_config('jit', 'off', false)",
                    None,
                    &[],
                )?;
                Ok(())
            })
        });
        if let Ok(name) = CString::new("pg_webhook worker") {
            // SAFETY: copies the string into backend status memory.
            unsafe { pg_sys::pgstat_report_appname(name.as_ptr()) };
        }
    }

    /// Applies reloaded settings. Returns false when this database is no longer served.
    fn reconfigure(&mut self) -> bool {
        let mut new = WorkerSettings::read();
        new.database = self.settings.database.clone();
        if !crate::guc::serves(&new.database) {
            log!(
                "pg_webhook worker: pg_webhook.database no longer includes \"{}\"; stopping (events stay queued)",
                new.database
            );
            return false;
        }
        if new == self.settings {
            return true;
        }
        match build_sender(&new) {
            Ok(sender) => self.dispatcher.set_sender(sender),
            Err(e) => warning!("pg_webhook worker: {e}; keeping the previous HTTP settings"),
        }
        self.targets_loaded = None;
        self.dispatcher.max_payload_bytes = new.max_payload_bytes;
        self.settings = new;
        true
    }

    fn record(&mut self) {
        if self.dispatcher.outcomes.is_empty() {
            return;
        }
        let Some(statements) = &self.statements else {
            self.record_failed();
            return;
        };
        let outcomes = &self.dispatcher.outcomes;
        let rescheduled = outcomes
            .iter()
            .any(|o| matches!(o.decision, queue::Decision::Retry { .. }));
        let callbacks = outcomes
            .iter()
            .any(|o| o.callback && !matches!(o.decision, queue::Decision::Retry { .. }));
        // The next event of an ordered subscription waits for this record: claim right after.
        let ordered = outcomes.iter().any(|o| {
            self.targets
                .get(&o.subscription_id)
                .is_some_and(|t| t.ordered)
        });
        let (health, gone) = health_changes(outcomes, &self.targets);
        let recorded = txn::run("recording delivery outcomes", || {
            statements.record(outcomes)?;
            statements.health(&health)?;
            let mut disabled = Vec::new();
            for (id, reason) in &gone {
                if statements.disable(*id, reason)? {
                    disabled.push((*id, reason.clone()));
                }
            }
            Ok(disabled)
        });
        match recorded {
            Ok(disabled) => {
                self.record_failures = 0;
                self.dispatcher.release_recorded();
                for (id, failing) in &health {
                    if let Some(t) = self.targets.get_mut(id) {
                        t.failing = *failing;
                    }
                }
                for (id, reason) in &disabled {
                    log!("pg_webhook: subscription {id} disabled: {reason}");
                    self.targets_loaded = None;
                }
                if rescheduled {
                    // Find out when the earliest retry is due.
                    self.scheduled_due_at = Some(Instant::now());
                }
                if ordered {
                    self.claim_wanted = true;
                }
                if callbacks {
                    // SAFETY: reads a backend global.
                    crate::wake::wake_callback_runner(unsafe { pg_sys::MyDatabaseId });
                }
            }
            Err(_) => {
                self.statements = None;
                self.record_failed();
            }
        }
    }

    fn record_failed(&mut self) {
        self.record_failures += 1;
        if self.record_failures >= RECORD_RETRIES {
            warning!(
                "pg_webhook worker: giving up recording {} outcomes; their events stay queued and will be sent again",
                self.dispatcher.outcomes.len()
            );
            self.dispatcher.release_recorded();
            // Those events may now sit behind the cursor.
            self.cursor.reset();
            self.record_failures = 0;
        }
    }

    /// Prepares the worker's statements once the extension exists. Returns false while it
    /// does not (or the check failed).
    fn ensure_statements(&mut self) -> bool {
        if self.statements.is_some() {
            return true;
        }
        let share = self.share;
        let prepared = txn::run(
            "preparing statements",
            || match queue::extension_readiness()? {
                Readiness::Ready => Statements::prepare(share).map(Ok),
                other => Ok(Err(other)),
            },
        );
        match prepared {
            Ok(Ok(statements)) => {
                if !self.ready {
                    log!("pg_webhook worker: extension found; delivering");
                    self.ready = true;
                }
                self.told = None;
                self.statements = Some(statements);
                // Everything queued before this worker (or extension) existed is read again.
                self.cursor.reset();
                self.targets_loaded = None;
                true
            }
            Ok(Err(state)) => {
                if self.ready || self.told.as_ref() != Some(&state) {
                    let database = &self.settings.database;
                    match &state {
                        Readiness::OtherVersion(v) => log!(
                            "pg_webhook worker: database \"{database}\" has pg_webhook {v} and this library is {}; events keep queueing, and are delivered after ALTER EXTENSION pg_webhook UPDATE",
                            env!("CARGO_PKG_VERSION")
                        ),
                        _ => log!(
                            "pg_webhook worker: extension pg_webhook is not installed in database \"{database}\"; stopping (the launcher starts workers again when it is)"
                        ),
                    }
                    self.ready = false;
                    self.told = Some(state);
                }
                false
            }
            Err(_) => false,
        }
    }

    fn claim(&mut self) {
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
        let Some(statements) = &self.statements else {
            return;
        };
        let want = room.min(self.settings.batch_size);
        let owned = self.dispatcher.owned();
        // Retries are looked for only when one may be due: skipping the query otherwise keeps
        // a claim to one statement under a stream of new events.
        let check_scheduled = polling || self.scheduled_due_at.is_some_and(|t| now >= t);
        let stale = self.targets_loaded.is_none_or(|t| {
            now.duration_since(t) >= self.settings.poll_interval.min(Duration::from_secs(1))
        });
        let targets = &mut self.targets;
        let cursor = &mut self.cursor;
        let limits = &mut self.limits;
        let dispatcher = &self.dispatcher;
        let share = self.share;
        let default_timeout = self.settings.default_timeout;
        let mut reloaded = false;
        let load = || {
            statements
                .subscriptions()
                .map(|rows| targets::build(rows, default_timeout))
        };
        let claimed = txn::run("claiming due events", || {
            if stale {
                *targets = load()?;
                reloaded = true;
            }
            let pinned: Vec<i32> = targets
                .iter()
                .filter(|(_, t)| t.pinned() && !t.ordered)
                .map(|(id, _)| *id)
                .collect();
            let after = cursor.position(|| statements.horizon())?;
            let fresh = statements.new_events(after, want, &pinned)?;
            let room_left = want - fresh.len().min(want);
            let mut scheduled = Vec::new();
            let mut next_due = None;
            if check_scheduled && room_left > 0 {
                // Read past the retries already in flight.
                scheduled = statements.scheduled_events(room_left + owned, &pinned)?;
                if scheduled.len() < room_left + owned {
                    next_due = Some(statements.ms_until_next_due()?);
                }
            }
            let unknown = fresh
                .iter()
                .chain(&scheduled)
                .any(|e| !targets.contains_key(&e.subscription_id));
            if unknown {
                *targets = load()?;
                reloaded = true;
            }
            // Paused and disabled subscriptions: park their events until resumed.
            let parked: Vec<_> = fresh
                .iter()
                .chain(&scheduled)
                .filter(|e| targets.get(&e.subscription_id).is_some_and(|t| !t.sends()))
                .map(|e| (e.ctid, e.id, e.subscription_id))
                .collect();
            statements.park(&parked)?;
            let mut plan = Plan::new(dispatcher, now);
            for event in fresh.iter().chain(&scheduled) {
                plan.consider(event, targets, limits, want);
            }
            // Ordered subscriptions of this worker with nothing in flight: their due heads.
            let mut heads_wanted = Vec::new();
            for (&id, t) in targets.iter() {
                let mine = (id as i64).rem_euclid(share.count as i64) == share.index as i64;
                if !(t.ordered && t.sends() && mine && plan.in_flight(id) == 0) {
                    continue;
                }
                match limits.wait_for_slot(id, now) {
                    Some(at) => plan.wake_at(at),
                    None if heads_wanted.len() + plan.start.len() < want => heads_wanted.push(id),
                    None => {}
                }
            }
            for head in statements.ordered_heads(&heads_wanted)? {
                plan.consider(&head, targets, limits, want);
            }
            statements.defer(&plan.defer)?;
            Ok((fresh, scheduled, next_due, plan.into_parts()))
        });
        let (fresh, scheduled, next_due, (start, deferred_until)) = match claimed {
            Ok(found) => found,
            Err(_) => {
                self.statements = None;
                return;
            }
        };
        if reloaded {
            self.targets_loaded = Some(now);
            let targets = &self.targets;
            self.limits
                .retain(|id| targets.get(&id).is_some_and(|t| t.pinned()));
        }
        let full_page = fresh.len() == want;
        self.cursor
            .page_read(fresh.last().map(|e| (e.txid, e.id)), !full_page);
        if check_scheduled {
            let room_left = want - fresh.len().min(want);
            self.scheduled_due_at = match next_due {
                // The page was full, or room ran out: more retries may be due now.
                None if room_left == 0 || !scheduled.is_empty() => Some(now),
                None => self.scheduled_due_at,
                Some(None) => None,
                Some(Some(ms)) => Some(now + Duration::from_millis(ms.max(0.0) as u64)),
            };
        }
        if let Some(at) = deferred_until {
            // Deferred events and rate-held heads: look again when the first is due.
            self.scheduled_due_at = Some(self.scheduled_due_at.map_or(at, |t| t.min(at)));
        }
        for event in start {
            let target = self.targets.get(&event.subscription_id);
            self.dispatcher.start(&self.runtime, event, target);
        }
        // A full page means a backlog: keep paging without spacing.
        self.paging = full_page;
        self.claim_wanted = full_page;
        if let Some(at) = self.scheduled_due_at {
            self.next_poll = self.next_poll.min(at.max(now + Duration::from_millis(1)));
        }
    }

    /// Retention and auto-disable, at most once per poll interval (worker 0 only).
    fn maintain(&mut self, now: Instant) {
        self.next_maintenance = now + self.settings.poll_interval.max(Duration::from_secs(1));
        let Some(statements) = &self.statements else {
            return;
        };
        let settings = &self.settings;
        let result = txn::run("retention and auto-disable", || {
            let mut disabled = Vec::new();
            if let Some(after) = settings.disable_after {
                for (id, name, since, error) in statements.overdue(after.as_secs_f64())? {
                    let reason = format!(
                        "endpoint failing since {since}; last error: {}; webhook.resume('{name}') re-enables it",
                        error.as_deref().unwrap_or("unknown")
                    );
                    if statements.disable(id, &reason)? {
                        disabled.push((name, reason));
                    }
                }
            }
            let purged = statements.purge(
                settings.retention.as_secs_f64(),
                settings.dead_retention.as_secs_f64(),
                PURGE_BATCH,
            )?;
            Ok((disabled, purged))
        });
        match result {
            Ok((disabled, purged)) => {
                for (name, reason) in &disabled {
                    log!("pg_webhook: subscription \"{name}\" disabled: {reason}");
                }
                if !disabled.is_empty() {
                    self.targets_loaded = None;
                }
                if purged as i64 >= PURGE_BATCH {
                    // More to purge: come back soon, in small steps.
                    self.next_maintenance = now + Duration::from_millis(100);
                }
            }
            Err(_) => self.statements = None,
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

    fn room(&self) -> usize {
        self.settings
            .max_in_flight
            .saturating_sub(self.dispatcher.owned())
    }

    fn record_due(&self, now: Instant) -> bool {
        let Some(since) = self.dispatcher.outcomes_since else {
            return false;
        };
        self.dispatcher.outcomes.len() >= RECORD_EAGER
            || now >= since + RECORD_DELAY
            || self.room() == 0
    }

    /// When the next claim may run: now for a backlog being paged through, else spaced.
    fn claim_at(&self) -> Option<Instant> {
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

    fn claim_due(&self, now: Instant) -> bool {
        self.claim_at().is_some_and(|at| now >= at)
    }

    fn wait(&mut self) {
        let now = Instant::now();
        // The next claim (which includes the poll tick) only counts while there is room;
        // when full, only finishing requests and recording can move things on.
        let mut deadline = now + self.settings.poll_interval;
        if let Some(since) = self.dispatcher.outcomes_since {
            deadline = deadline.min(since + RECORD_DELAY);
        }
        if let Some(at) = self.claim_at() {
            deadline = deadline.min(at);
        }
        if self.record_failures > 0 {
            deadline = deadline.max(now + self.settings.poll_interval.min(Duration::from_secs(1)));
        }
        if deadline <= now {
            return;
        }
        if self.dispatcher.in_flight() == 0 {
            if self.claim_wanted {
                // Work is known to be waiting and only the claim spacing holds it back: under a
                // stream of commits the latch is set again at once, so sleeping on it would spin.
                sleep(deadline - now);
            } else if wait_latch(deadline - now) {
                self.claim_wanted = true;
            }
            return;
        }
        self.dispatcher
            .collect(&self.runtime, (deadline - now).min(BUSY_TICK));
        if take_latch() {
            self.claim_wanted = true;
        }
    }
}

/// What one claim decided: events to start now, and events of limited subscriptions to put
/// back for later (ctid, id, delay in ms).
struct Plan<'a> {
    dispatcher: &'a Dispatcher,
    now: Instant,
    start: Vec<QueuedEvent>,
    /// Started in this plan, per subscription (on top of what the dispatcher owns).
    starting: HashMap<i32, usize>,
    defer: Vec<(pg_sys::ItemPointerData, i64, i64)>,
    /// Turned away in this plan, per subscription.
    over: HashMap<i32, usize>,
    /// When the earliest deferred event or rate-held head is due.
    earliest: Option<Instant>,
}

impl<'a> Plan<'a> {
    fn new(dispatcher: &'a Dispatcher, now: Instant) -> Plan<'a> {
        Plan {
            dispatcher,
            now,
            start: Vec::new(),
            starting: HashMap::new(),
            defer: Vec::new(),
            over: HashMap::new(),
            earliest: None,
        }
    }

    fn in_flight(&self, subscription: i32) -> usize {
        self.dispatcher.owned_by(subscription) + self.starting.get(&subscription).unwrap_or(&0)
    }

    fn wake_at(&mut self, at: Instant) {
        self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
    }

    /// Starts `event`, defers it, or leaves it (in flight already, parked, or no room).
    fn consider(
        &mut self,
        event: &QueuedEvent,
        targets: &HashMap<i32, Target>,
        limits: &mut Limits,
        want: usize,
    ) {
        if self.start.len() == want || self.dispatcher.owns(event.id) {
            return;
        }
        let sub = event.subscription_id;
        let target = targets.get(&sub);
        if target.is_some_and(|t| !t.sends()) {
            return; // parked in the claim transaction
        }
        if let Some(t) = target.filter(|t| t.pinned()) {
            let over = self.over.get(&sub).copied().unwrap_or(0);
            if let Admission::Later(wait) =
                limits.admit(sub, &t.limits, self.in_flight(sub), over, self.now)
            {
                if !t.ordered {
                    self.defer
                        .push((event.ctid, event.id, wait.as_millis().max(1) as i64));
                }
                *self.over.entry(sub).or_default() += 1;
                self.wake_at(self.now + wait);
                return;
            }
        }
        *self.starting.entry(sub).or_default() += 1;
        self.start.push(event.clone());
    }

    fn into_parts(self) -> (Vec<QueuedEvent>, Option<Instant>) {
        (self.start, self.earliest)
    }
}

/// Re-reads postgresql.conf after a SIGHUP; true when it did. Call between transactions.
fn reload_config_if_asked() -> bool {
    // SAFETY: a sig_atomic_t flag set by our SIGHUP handler; ProcessConfigFile runs on the main
    // thread, outside any transaction.
    unsafe {
        if pg_sys::ConfigReloadPending == 0 {
            return false;
        }
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
    }
    true
}

/// Whole milliseconds for WaitLatch, rounded up: rounding a sub-millisecond wait down to 0
/// would turn every short wait into a busy loop.
fn latch_ms(timeout: Duration) -> libc::c_long {
    timeout
        .as_micros()
        .div_ceil(1000)
        .clamp(0, i32::MAX as u128) as libc::c_long
}

/// Sleeps without watching the latch (the postmaster's death still ends the process).
fn sleep(timeout: Duration) {
    // SAFETY: standard wait on the main thread.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            latch_ms(timeout),
            pg_sys::PG_WAIT_EXTENSION,
        );
    }
}

/// Subscriptions whose health changed with these outcomes (id, now failing), and those whose
/// endpoint answered 410 Gone, which the Standard Webhooks spec says to stop sending to.
/// Health changes (subscription id, now failing) and subscriptions to disable (id, reason).
type Health = (Vec<(i32, bool)>, Vec<(i32, String)>);

fn health_changes(outcomes: &[queue::Outcome], targets: &HashMap<i32, Target>) -> Health {
    let mut state: HashMap<i32, bool> = HashMap::new();
    let mut gone: Vec<(i32, String)> = Vec::new();
    for o in outcomes.iter().filter(|o| o.reached_endpoint) {
        let failing = !matches!(o.decision, queue::Decision::Delivered);
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

/// Sleeps on the latch; true when it was set (a commit queued events, or a signal arrived).
fn wait_latch(timeout: Duration) -> bool {
    let ms = latch_ms(timeout);
    // SAFETY: standard latch wait on the main thread; exits if the postmaster dies.
    let rc = unsafe {
        let rc = pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        rc
    };
    rc & pg_sys::WL_LATCH_SET as i32 != 0
}

/// Consumes a set latch without sleeping.
fn take_latch() -> bool {
    // SAFETY: MyLatch is this process's own latch; reading is_set is what WaitLatch does first.
    unsafe {
        if (*pg_sys::MyLatch).is_set != 0 {
            pg_sys::ResetLatch(pg_sys::MyLatch);
            return true;
        }
    }
    false
}
