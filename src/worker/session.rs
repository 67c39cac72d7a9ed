//! A delivery worker's footing: its session settings, the settings it reloads, and its
//! prepared statements (made once the extension exists in its database, made again after any
//! error).

use std::time::Duration;

use pg_webhook_core::limits::Limits;
use pgrx::prelude::*;

use super::{backend, txn, Worker};
use crate::delivery::build_sender;
use crate::guc::WorkerSettings;
use crate::queue::{self, Readiness, Statements};

impl Worker {
    /// The session settings (sql/worker/session.sql). Without them the worker's queries could be
    /// hijacked through search_path, so it does not deliver until they are in place: it retries,
    /// less and less often, until they are (txn::run logs each failure) or it is told to stop.
    pub(super) fn setup_session(&mut self) {
        let mut delay = Duration::from_millis(100);
        while txn::run("setting up the worker's session", || {
            Spi::connect(|client| {
                client.select(include_str!("../../sql/worker/session.sql"), None, &[])?;
                Ok(())
            })
        })
        .is_err()
        {
            backend::wait_latch(delay);
            pg_sys::check_for_interrupts!();
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        backend::report_appname(&format!("pg_webhook worker {}", self.share.index));
    }

    /// Applies reloaded settings. Returns false when this database is no longer served.
    pub(super) fn reconfigure(&mut self) -> bool {
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
        self.dispatcher.held_room = new.max_in_flight;
        self.settings = new;
        true
    }

    /// Forgets what this worker knew of the events and subscriptions of an extension that was
    /// dropped and made again without it noticing in between (in one transaction, or while it
    /// waited on a slow request): their ids start over in the new one, where an outcome
    /// recorded by id would land on another event, and a claimed id would hide a new event with
    /// the same id from the claim, stranding it.
    fn forget_dropped_extension(&mut self) {
        let requests = self.dispatcher.forget_all();
        if requests > 0 {
            log!(
                "pg_webhook worker: extension pg_webhook was dropped and made again; the {requests} requests of its dropped events this worker had going or not yet recorded are forgotten"
            );
        }
        self.limits = Limits::default();
        self.batch_holds.clear();
        self.cuts.clear();
        self.targets.clear();
        self.record_failures = 0;
        self.record_retry_at = None;
        self.events_per_request = 1.0;
    }

    /// Puts back, as themselves, the batches this worker's share's previous worker sent and did
    /// not live to record (see queue::take_over_batches); false if that failed (logged).
    fn take_over_batches(&mut self) -> bool {
        let share = self.share;
        match txn::run("taking over the batches a previous worker left out", || {
            queue::take_over_batches(share)
        }) {
            Ok(0) => true,
            Ok(events) => {
                log!(
                    "pg_webhook worker: {events} events of batches a previous worker sent and did not record go out again in those batches"
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Prepares the worker's statements once the extension exists. Returns false while it
    /// does not (or the check failed).
    pub(super) fn ensure_statements(&mut self) -> bool {
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
                if statements.extension != self.extension {
                    if self.extension != pg_sys::Oid::INVALID {
                        self.forget_dropped_extension();
                    }
                    // Before this worker sends anything of the extension's.
                    if !self.take_over_batches() {
                        return false;
                    }
                    self.extension = statements.extension;
                }
                if !self.ready {
                    log!("pg_webhook worker: extension found; delivering");
                    self.ready = true;
                }
                self.told = None;
                self.statements = Some(statements);
                // Everything queued before this worker (or extension) existed is read again.
                self.cursor.reset();
                // Passed events included.
                self.lagging.clear();
                self.targets_loaded = None;
                self.sending.clear();
                true
            }
            Ok(Err(state)) => {
                if self.ready || self.told.as_ref() != Some(&state) {
                    let database = &self.settings.database;
                    // SAFETY: a plain read of the connected database's encoding.
                    let utf8 = unsafe { pg_sys::GetDatabaseEncoding() }
                        == pg_sys::pg_enc::PG_UTF8 as std::ffi::c_int;
                    match &state {
                        // The update refuses such a database: telling the DBA to run it would
                        // leave the queue growing for nothing.
                        Readiness::OtherVersion(v) if !utf8 => log!(
                            "pg_webhook worker: database \"{database}\" has pg_webhook {v} and is not encoded in UTF8: this library delivers nothing of it and ALTER EXTENSION pg_webhook UPDATE refuses it, while its events keep queueing; move its data into a UTF8 database (pg_dump and pg_restore convert it), or drop pg_webhook from it"
                        ),
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
}
