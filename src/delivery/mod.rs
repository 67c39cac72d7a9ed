//! What the delivery worker and `webhook.ping()` share: the HTTP client built from the
//! settings, the async runtime it runs on, and subscriptions turned into ready-to-send targets.

pub mod targets;

use pg_webhook_core::address::AddressPolicy;
use pg_webhook_core::http::{Sender, SenderSettings};
use tokio::runtime::Runtime;

use crate::guc::WorkerSettings;

/// A tokio runtime on the calling (backend main) thread, for `webhook.ping()`.
pub fn new_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .on_thread_start(block_signals_in_helper_thread)
        .build()
}

/// The delivery worker's runtime: requests run on one thread of their own, which never calls
/// Postgres and takes no signal, so they progress while the main thread claims and records
/// (with requests only moving inside `block_on`, they stood still during every transaction).
pub fn new_worker_runtime() -> std::io::Result<Runtime> {
    // The thread starts inside build(): block every signal around it, so the thread is born
    // with them blocked (a Postgres handler must never run there, even before on_thread_start).
    // SAFETY: pthread_sigmask on local sets, for the calling thread; the mask is restored below.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut before);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pg_webhook http")
        .enable_io()
        .enable_time()
        .on_thread_start(block_signals_in_helper_thread)
        .build();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    runtime
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

/// The HTTP client for these settings: address policy, CA bundle, pool and excerpt size.
pub fn build_sender(settings: &WorkerSettings) -> Result<Sender, String> {
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
