//! Per-key order's test helpers: a receiver refusing one event twice, and what it accepted.

use super::receiver::{Receiver, Reply, Request};

/// A receiver that answers 503 to the first two requests of the event whose `seq` is 1.
pub fn refusing_seq_1_twice() -> Receiver {
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Receiver::with(move |req: &Request, _| {
        if req.json()["record"]["seq"].as_i64() == Some(1)
            && refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2
        {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    })
}

/// The `seq` of each accepted request, in the order they were accepted.
pub fn seqs(rx: &Receiver) -> Vec<i64> {
    rx.accepted()
        .iter()
        .map(|r| r.json()["record"]["seq"].as_i64().unwrap_or(-1))
        .collect()
}

/// A retry schedule that tries again soon.
pub const RETRY_SOON: &str =
    ", retry_schedule => ARRAY['300 milliseconds']::interval[], max_attempts => 10";
