//! A TCP server that accepts connections and never answers until told to close them: libpq
//! waits for its greeting where no cancel reaches (tests/runner_turns.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How many of the connections the silent server holds it closes, oldest first (`ALL`: every
/// one, and every one that comes after).
pub type Release = Arc<AtomicUsize>;
pub const ALL: usize = usize::MAX;

/// A server that accepts connections and never says a word, until it is told to close them
/// (`Release`): libpq waits for its greeting in a loop that neither a cancel nor
/// pg_terminate_backend interrupts (PostgreSQL 15). Its port, and what it closes.
pub fn silent_server() -> (u16, Release) {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    silent
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let port = silent.local_addr().expect("its address").port();
    let release = Arc::new(AtomicUsize::new(0));
    let told = Arc::clone(&release);
    std::thread::spawn(move || {
        let (mut held, mut closed) = (std::collections::VecDeque::new(), 0);
        loop {
            if let Ok((stream, _)) = silent.accept() {
                held.push_back(stream);
            }
            let release = told.load(Ordering::SeqCst);
            while (release == ALL || closed < release) && held.pop_front().is_some() {
                closed += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    (port, release)
}
