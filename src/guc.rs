//! Every `pg_webhook.*` setting, defined in one place.
//!
//! All are SIGHUP: they live in postgresql.conf (or ALTER SYSTEM) and the worker re-reads them on
//! reload. Values that must parse (the allowlist) are checked when set, so a typo is an error at
//! `SET`/reload instead of a worker that silently refuses everything.

use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Duration;

use pg_webhook_core::address::AddressPolicy;
use pgrx::pg_sys;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static MAX_IN_FLIGHT: GucSetting<i32> = GucSetting::<i32>::new(256);
pub static DEFAULT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(15_000);
/// 2,000: a batched drain (batches of 100) took 7.7 µs of worker CPU per event claiming 500 at a
/// time and 7.0 claiming 2,000 (1,000: 7.7, 5,000: 7.1); one event per request claims at most
/// `max_in_flight` anyway.
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(2_000);
pub static POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
pub static RESPONSE_EXCERPT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1_024);
pub static ALLOWED_DESTINATIONS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));
pub static CA_BUNDLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static MAX_PAYLOAD_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1 << 20);
pub static RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
pub static DEAD_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
pub static DISABLE_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(5 * 86_400);
pub static CALLBACK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);

/// Defines the settings; called from `_PG_init` in every process that loads the library. (A
/// flat list of definitions, one per setting: long, but nothing to split.)
pub fn init() {
    GucRegistry::define_string_guc(
        c"pg_webhook.database",
        c"Only this database gets delivery workers; empty (the default): every database where pg_webhook is created.",
        c"Workers of other databases stop when it changes; their events stay queued.",
        &DATABASE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // A restart-only setting can be defined only while the postmaster preloads the library:
    // defined so later (a server without pg_webhook in shared_preload_libraries loading it for
    // CREATE EXTENSION or a capture trigger), PostgreSQL ends the session with FATAL, so every
    // write to a subscribed table would fail. Only the workers read it, and only a preloaded
    // library starts them: elsewhere it is defined as a reloadable setting, so a value already
    // in postgresql.conf (or set with ALTER SYSTEM before the restart that preloads) is kept
    // rather than warned about and dropped under the reserved prefix.
    // SAFETY: a plain read of a postmaster-set global.
    define_workers(
        if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
            GucContext::Postmaster
        } else {
            GucContext::Sighup
        },
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.max_in_flight",
        c"Most HTTP requests each worker has in flight at once.",
        c"Requests share pooled keep-alive connections.",
        &MAX_IN_FLIGHT,
        1,
        10_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.default_timeout",
        c"HTTP timeout for subscriptions that set none.",
        c"Covers connecting, sending and reading the response.",
        &DEFAULT_TIMEOUT_MS,
        1,
        300_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.callback_timeout",
        c"Longest a subscription's callback may run before it is cancelled.",
        c"A cancelled callback is recorded on its event (callback_error) and not run again.",
        &CALLBACK_TIMEOUT_MS,
        1,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.batch_size",
        c"Most events the worker claims in one transaction.",
        c"",
        &BATCH_SIZE,
        1,
        10_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.poll_interval",
        c"How often the worker looks for due events when nothing wakes it.",
        c"Commits wake the worker at once; this is the safety net and the retry clock.",
        &POLL_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.response_excerpt_bytes",
        c"How much of each response body is kept in webhook.attempts.",
        c"The rest of the body is not read.",
        &RESPONSE_EXCERPT_BYTES,
        0,
        1_048_576,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    // SAFETY: the hook matches GucStringCheckHook and only reads its argument.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pg_webhook.allowed_destinations",
            c"Hosts and address ranges webhooks may reach although they are not public.",
            c"Comma-separated host names ('hooks.internal', '*.corp'), addresses or CIDR ranges ('127.0.0.1', '10.0.0.0/8'). Loopback, private, link-local, multicast and unspecified addresses are refused unless listed.",
            &ALLOWED_DESTINATIONS,
            GucContext::Sighup,
            GucFlags::SUPERUSER_ONLY,
            Some(check_allowed_destinations),
            None,
            None,
        );
    }
    // SAFETY: the hook matches GucStringCheckHook and only reads its argument.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pg_webhook.ca_bundle",
            c"PEM file of extra CA certificates to trust for https endpoints.",
            c"Added to the system and Mozilla roots. Empty: none. Checked when set.",
            &CA_BUNDLE,
            GucContext::Sighup,
            GucFlags::SUPERUSER_ONLY,
            Some(check_ca_bundle),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"pg_webhook.max_payload_bytes",
        c"Largest request body the worker sends.",
        c"An event whose body is larger is marked dead with the reason instead of being truncated.",
        &MAX_PAYLOAD_BYTES,
        1024,
        1 << 30,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.retention",
        c"How long delivered events and their attempts are kept.",
        c"The worker purges older ones in small batches. Replay needs the event to be kept.",
        &RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.dead_retention",
        c"How long dead events and their attempts are kept.",
        c"",
        &DEAD_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_webhook.disable_after",
        c"Disable a subscription whose endpoint has failed continuously this long (0: never).",
        c"Its events keep queueing; webhook.resume() re-enables it.",
        &DISABLE_AFTER_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // SAFETY: called from _PG_init on the main thread.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"pg_webhook".as_ptr()) };
}

/// `pg_webhook.workers`, restart-only where the library is preloaded (see `init`).
fn define_workers(context: GucContext) {
    GucRegistry::define_int_guc(
        c"pg_webhook.workers",
        c"Number of delivery workers for the database; 0 (the default): 2 on a server with 2 or more CPUs, else 1.",
        c"Each takes a share of the events; more than one helps when one core cannot keep up. Needs a restart.",
        &WORKERS,
        0,
        32,
        context,
        GucFlags::default(),
    );
}

/// The string a GUC check hook is asked about (`None` for NULL).
///
/// # Safety
/// `newval` is what guc.c passes to a string check hook.
unsafe fn proposed(newval: *mut *mut c_char) -> Option<String> {
    // SAFETY: guc.c passes a valid pointer to a (possibly NULL) C string.
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            return None;
        }
        Some(CStr::from_ptr(*newval).to_string_lossy().into_owned())
    }
}

/// A check hook's verdict: true, or false with `problem` as the error's detail.
fn verdict(problem: Option<String>) -> bool {
    let Some(problem) = problem else {
        return true;
    };
    let detail = CString::new(problem.replace('\0', " ")).unwrap_or_default();
    // SAFETY: guc.c reads this right after the hook returns false.
    unsafe { pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr()) };
    false
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_allowed_destinations(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by guc.c as a string check hook.
    let Some(text) = (unsafe { proposed(newval) }) else {
        return true;
    };
    verdict(AddressPolicy::parse(&text).err().map(|e| e.to_string()))
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_ca_bundle(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by guc.c as a string check hook.
    let Some(path) = (unsafe { proposed(newval) }) else {
        return true;
    };
    let path = path.trim();
    if path.is_empty() {
        return true;
    }
    verdict(match std::fs::read(path) {
        Err(e) => Some(format!("cannot read \"{path}\": {e}")),
        Ok(pem) => pg_webhook_core::http::check_ca_pem(&pem)
            .err()
            .map(|e| format!("\"{path}\": {e}")),
    })
}

fn string(setting: &GucSetting<Option<CString>>) -> String {
    setting
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn positive(setting: &GucSetting<i32>) -> usize {
    setting.get().max(1) as usize
}

/// A snapshot of the settings the worker uses, read on the main thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    pub database: String,
    pub max_in_flight: usize,
    pub default_timeout: Duration,
    pub batch_size: usize,
    pub poll_interval: Duration,
    pub response_excerpt_bytes: usize,
    pub allowed_destinations: String,
    pub ca_bundle: String,
    pub max_payload_bytes: usize,
    pub retention: Duration,
    pub dead_retention: Duration,
    /// `None`: never disable.
    pub disable_after: Option<Duration>,
}

impl WorkerSettings {
    pub fn read() -> WorkerSettings {
        WorkerSettings {
            database: string(&DATABASE),
            max_in_flight: positive(&MAX_IN_FLIGHT),
            default_timeout: Duration::from_millis(positive(&DEFAULT_TIMEOUT_MS) as u64),
            batch_size: positive(&BATCH_SIZE),
            poll_interval: Duration::from_millis(positive(&POLL_INTERVAL_MS) as u64),
            response_excerpt_bytes: RESPONSE_EXCERPT_BYTES.get().max(0) as usize,
            allowed_destinations: string(&ALLOWED_DESTINATIONS),
            ca_bundle: string(&CA_BUNDLE),
            max_payload_bytes: positive(&MAX_PAYLOAD_BYTES),
            retention: Duration::from_secs(RETENTION_S.get().max(0) as u64),
            dead_retention: Duration::from_secs(DEAD_RETENTION_S.get().max(0) as u64),
            disable_after: match DISABLE_AFTER_S.get() {
                s if s <= 0 => None,
                s => Some(Duration::from_secs(s as u64)),
            },
        }
    }
}

/// Delivery workers per database when `pg_webhook.workers` is 0: one per CPU, at most this many
/// (what the benchmark measured: two drain one per request 0.25x and batches 1.0x the sink's
/// ceiling on 2 cores, one 0.22x and 0.57x; more are not measured, and each takes a background
/// worker slot that parallel queries share).
const AUTO_WORKERS_MAX: usize = 2;

static RESOLVED_WORKERS: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// How many delivery workers each database has. Resolved once, in the postmaster as it loads
/// the library (`_PG_init` calls this), so the launcher and every worker, all forked from it,
/// agree on the count that shares out the events whatever CPUs they see later.
pub fn worker_count() -> i32 {
    *RESOLVED_WORKERS.get_or_init(|| match WORKERS.get() {
        n if n > 0 => n,
        _ => {
            std::thread::available_parallelism().map_or(1, |cpus| cpus.get().min(AUTO_WORKERS_MAX))
                as i32
        }
    })
}

/// `pg_webhook.max_payload_bytes`, as this process last read its configuration.
pub fn max_payload_bytes() -> usize {
    positive(&MAX_PAYLOAD_BYTES)
}

/// The longest a callback may run (`pg_webhook.callback_timeout`).
pub fn callback_timeout() -> Duration {
    Duration::from_millis(positive(&CALLBACK_TIMEOUT_MS) as u64)
}

/// Whether `pg_webhook.database` lets `database` have delivery workers.
pub fn serves(database: &str) -> bool {
    // Read in place, not copied: every commit that queued events in a database without
    // workers asks this.
    // SAFETY: the setting's current value, a NUL-terminated string Postgres owns (or NULL),
    // read on the main thread.
    let only = unsafe {
        let raw = *DATABASE.as_ptr();
        if raw.is_null() {
            &[][..]
        } else {
            std::ffi::CStr::from_ptr(raw).to_bytes()
        }
    };
    only.is_empty() || only == database.as_bytes()
}

pub fn served_database() -> String {
    string(&DATABASE)
}
